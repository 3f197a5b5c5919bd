package heap

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// appendTrackRequest appends json.Marshal(TrackRequest{appID, evs}), byte
// for byte, without reflection: encoding/json's map encoder was a fifth of
// the emitter's CPU. Non-string property values go through json.Marshal.
func appendTrackRequest(b []byte, appID string, evs []Event) ([]byte, error) {
	b = append(b, `{"app_id":`...)
	b = appendString(b, appID)
	b = append(b, `,"events":`...)
	if evs == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		if len(e.JSON) > 0 {
			b = append(b, e.JSON...)
			continue
		}
		var err error
		if b, err = AppendEvent(b, e); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// AppendEvent appends e as a bulk request lists it: json.Marshal(e), byte
// for byte. Event.JSON may hold the result, for Track to send as is.
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
		var stack [16]string // most events' keys, without an allocation
		keys := stack[:0]
		for k := range e.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for j, k := range keys {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if s, ok := e.Properties[k].(string); ok {
				b = appendString(b, s)
				continue
			}
			v, err := json.Marshal(e.Properties[k])
			if err != nil {
				return nil, err
			}
			b = append(b, v...)
		}
		b = append(b, '}')
	} else if len(e.Props) > 0 {
		b = append(b, `,"properties":{`...)
		for j, p := range e.Props {
			if j > 0 {
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
		n += eventSize(e)
	}
	return n
}

// eventSize is a capacity that fits most events' AppendEvent.
func eventSize(e Event) int {
	if len(e.JSON) > 0 {
		return len(e.JSON) + 1
	}
	n := 80 + len(e.Identity) + len(e.Event) + len(e.Timestamp) + len(e.IdempotencyKey)
	for k, v := range e.Properties {
		n += 6 + len(k)
		if s, ok := v.(string); ok {
			n += len(s) + len(s)/8
		}
	}
	for _, p := range e.Props {
		n += 6 + len(p.Key) + len(p.Value) + len(p.Value)/8
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
