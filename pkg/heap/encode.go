package heap

import (
	"fmt"
	"unicode/utf8"
)

// appendTrackRequest appends the bulk body of evs as encoding/json would
// write it for {"app_id": appID, "events": evs} with each event's properties
// a map, byte for byte, without reflection: encoding/json's map encoder was
// a large share of the emitter's CPU (BENCHMARKS.md).
func appendTrackRequest(b []byte, appID string, evs []Event) ([]byte, error) {
	b = appendTrackHead(b, appID)
	if evs == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = AppendEvent(b, e); err != nil {
			return nil, fmt.Errorf("events[%d]: %w", i, err)
		}
	}
	return append(b, "]}"...), nil
}

// appendEncodedRequest is appendTrackRequest for events AppendEvent wrote.
func appendEncodedRequest(b []byte, appID string, evs [][]byte) []byte {
	b = append(appendTrackHead(b, appID), '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, "]}"...)
}

func appendTrackHead(b []byte, appID string) []byte {
	b = append(b, `{"app_id":`...)
	b = appendString(b, appID)
	return append(b, `,"events":`...)
}

// AppendEvent appends e as a bulk request lists it, as encoding/json writes
// the event with its properties a map, byte for byte: what TrackEncoded
// takes. It refuses properties not in strictly increasing key order.
func AppendEvent(b []byte, e Event) ([]byte, error) {
	b = append(b, `{"identity":`...)
	b = appendString(b, e.Identity)
	b = append(b, `,"event":`...)
	b = appendString(b, e.Event)
	if e.Timestamp != "" {
		b = append(b, `,"timestamp":`...)
		b = appendString(b, e.Timestamp)
	}
	if len(e.Properties) > 0 {
		b = append(b, `,"properties":{`...)
		for j, p := range e.Properties {
			if j > 0 {
				if prev := e.Properties[j-1].Key; p.Key <= prev {
					return b, fmt.Errorf("property %q after %q: properties must be in increasing key order", p.Key, prev)
				}
				b = append(b, ',')
			}
			b = append(appendString(b, p.Key), ':')
			b = appendString(b, p.Value)
		}
		b = append(b, '}')
	}
	if e.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendString(b, e.IdempotencyKey)
	}
	return append(b, '}'), nil
}

// trackRequestSize is a capacity that fits most bodies in one allocation.
func trackRequestSize(appID string, evs []Event) int {
	n := 32 + len(appID)
	for _, e := range evs {
		n += 80 + len(e.Identity) + len(e.Event) + len(e.Timestamp) + len(e.IdempotencyKey)
		for _, p := range e.Properties {
			n += 6 + len(p.Key) + len(p.Value) + len(p.Value)/8
		}
	}
	return n
}

// encodedRequestSize is the size of appendEncodedRequest's body.
func encodedRequestSize(appID string, evs [][]byte) int {
	n := 32 + len(appID)
	for _, e := range evs {
		n += len(e) + 1
	}
	return n
}

const hexDigits = "0123456789abcdef"

// safeASCII marks the bytes appendString copies as they are: ASCII but
// control characters, '"', '\\' and the HTML-escaped '<', '>' and '&'.
var safeASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString writes s as encoding/json does (HTML-escaped, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safeASCII[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
