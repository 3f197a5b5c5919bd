package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The event's Avro binary encoding, written out for this one schema
// (schemas/heap_email_event.avsc, fields in order). goavro's generic path
// builds a map per event and a union wrapper per optional field, which
// dominated the mapper's allocations (BENCHMARKS.md). NewCodec
// checks these bytes against goavro's, so a schema change cannot drift.

var errShort = errors.New("truncated or malformed Avro")

func appendString(b []byte, s string) []byte {
	b = binary.AppendVarint(b, int64(len(s)))
	return append(b, s...)
}

// appendOptional writes a ["null","string"] union: "" is null.
func appendOptional(b []byte, s string) []byte {
	if s == "" {
		return binary.AppendVarint(b, 0)
	}
	return appendString(binary.AppendVarint(b, 1), s)
}

// millis is timestamp-millis exactly as goavro computes it. For a time
// outside [minMillis, maxMillis] the true value overflows the long: check
// with checkTimes first.
func millis(t time.Time) int64 { return t.Unix()*1e3 + int64(t.Nanosecond()/1e6) }

// The first and last instants a timestamp-millis long holds (millis
// truncates to the millisecond).
var (
	minMillis = time.UnixMilli(math.MinInt64)
	maxMillis = time.UnixMilli(math.MaxInt64).Add(time.Millisecond - time.Nanosecond)
)

// ErrTimeRange is a time an Avro timestamp-millis long cannot hold: about
// 292 million years either side of 1970.
var ErrTimeRange = errors.New("events: time outside the range of Avro timestamp-millis")

// checkTimes reports an event time that millis cannot encode.
func checkTimes(e Event) error {
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"time", e.Time}, {"lineage received_at", e.Lineage.ReceivedAt}} {
		if f.t.Before(minMillis) || f.t.After(maxMillis) {
			return fmt.Errorf("%w: %s %s", ErrTimeRange, f.name, f.t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

func fromMillis(ms int64) time.Time {
	s := ms / 1e3
	return time.Unix(s, (ms-s*1e3)*1e6).UTC()
}

// appendBinary appends e's Avro binary encoding (no single-object header).
func appendBinary(b []byte, e Event) []byte {
	b = appendString(b, e.ID)
	b = appendString(b, e.SourceID)
	b = appendString(b, e.AppID)
	b = appendString(b, e.Identity)
	b = appendString(b, e.EmailKey)
	b = appendString(b, e.Name)
	b = binary.AppendVarint(b, millis(e.Time))
	b = appendOptional(b, e.CampaignID)
	b = appendOptional(b, e.CampaignTitle)
	b = appendOptional(b, e.ListID)
	b = appendOptional(b, e.IP)
	b = appendOptional(b, e.URL)
	b = appendOptional(b, e.BounceType)
	b = appendOptional(b, e.Subject)
	if len(e.Tags) > 0 {
		b = binary.AppendVarint(b, int64(len(e.Tags)))
		for _, t := range e.Tags {
			b = appendString(b, t)
		}
	}
	b = binary.AppendVarint(b, 0) // end of the tags array
	l := e.Lineage
	b = appendString(b, l.Topic)
	b = binary.AppendVarint(b, int64(l.Partition))
	b = binary.AppendVarint(b, l.Offset)
	b = appendString(b, l.Kind)
	b = appendString(b, l.RequestID)
	return binary.AppendVarint(b, millis(l.ReceivedAt))
}

// sizeHint is a capacity that fits most encodings in one allocation.
func sizeHint(e Event) int {
	n := 64 + len(e.ID) + len(e.SourceID) + len(e.AppID) + len(e.Identity) + len(e.EmailKey) + len(e.Name) +
		len(e.CampaignID) + len(e.CampaignTitle) + len(e.ListID) + len(e.IP) + len(e.URL) + len(e.BounceType) +
		len(e.Subject) + len(e.Lineage.Topic) + len(e.Lineage.Kind) + len(e.Lineage.RequestID)
	for _, t := range e.Tags {
		n += len(t) + 2
	}
	return n
}

// reader decodes b. With whole set (string(b) at the start), its strings
// are substrings of whole: one allocation per event, not one per field.
type reader struct {
	b     []byte
	whole string
	err   error
}

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) > 0 && r.b[0] < 0x80 { // one byte, as most lengths: zigzag
		u := uint64(r.b[0])
		r.b = r.b[1:]
		return int64(u>>1) ^ -int64(u&1)
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int32() int32 {
	v := r.long()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.err = errShort
		return 0
	}
	return int32(v)
}

func (r *reader) str() string {
	b := r.bytes()
	if r.whole != "" {
		end := len(r.whole) - len(r.b) // b ends where the rest starts
		return r.whole[end-len(b) : end]
	}
	return string(b)
}

// bytes reads a string as a slice of the input, without a copy.
func (r *reader) bytes() []byte {
	n := r.long()
	if r.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(r.b)) {
		r.err = errShort
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) optional() string {
	switch r.long() {
	case 0:
		return ""
	case 1:
		return r.str()
	default:
		r.err = errShort
		return ""
	}
}

// route reads the fields an encoding starts with, in the schema's order.
func (r *reader) route() (rt Route, emailKey string) {
	rt.ID, rt.SourceID, rt.AppID, rt.Identity = r.str(), r.str(), r.str(), r.str()
	emailKey = r.str()
	rt.Name = r.str()
	rt.Time = fromMillis(r.long())
	return rt, emailKey
}

// readBinary decodes an encoding appendBinary wrote, or any writer's
// (array blocks may carry negative counts followed by a byte size). Its
// strings are substrings of whole, which holds b's bytes.
func readBinary(b []byte, whole string) (Event, []byte, error) {
	r := &reader{b: b, whole: whole}
	rt, emailKey := r.route()
	e := Event{ID: rt.ID, SourceID: rt.SourceID, AppID: rt.AppID, Identity: rt.Identity, EmailKey: emailKey, Name: rt.Name,
		Time: rt.Time}
	e.CampaignID, e.CampaignTitle, e.ListID = r.optional(), r.optional(), r.optional()
	e.IP, e.URL, e.BounceType, e.Subject = r.optional(), r.optional(), r.optional(), r.optional()
	for r.err == nil {
		n := r.long()
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			r.long() // the block's size in bytes
		}
		if n > int64(len(r.b)) {
			r.err = errShort
			break
		}
		for range n {
			e.Tags = append(e.Tags, r.str())
		}
	}
	e.Lineage = Lineage{Topic: r.str(), Partition: r.int32(), Offset: r.long(), Kind: r.str(), RequestID: r.str()}
	e.Lineage.ReceivedAt = fromMillis(r.long())
	if r.err != nil {
		return Event{}, nil, r.err
	}
	return e, r.b, nil
}
