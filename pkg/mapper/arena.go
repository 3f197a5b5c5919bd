package mapper

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// arena returns chunk part's arena with room for records: the last
// transaction's, reset, when all its records were flushed, else a new one.
func (m *loop) arena(part, records int) *arena {
	if !m.flushed {
		m.arenas[part] = &arena{}
	}
	m.arenas[part].reset(records)
	return m.arenas[part]
}

// EventRecord routes e: heap.events when it has an identity Heap accepts,
// heap.events.pending while the identity is unknown, heap.events.dlq when the
// identity can never be sent. The materializer releases pending events
// through it too, so both paths route alike.
func EventRecord(t kafka.Topics, codec *events.Codec, e events.Event) *kgo.Record {
	return eventRecord(t, codec, e, nil)
}

// arena hands out a chunk's records, headers and bytes from a few large
// blocks instead of five allocations a record; what it hands out is never
// written again while any record in it may be read. A session reuses its
// arenas once a transaction's records were all flushed (reset): about a
// fifth of the mapper's allocated bytes otherwise.
type arena struct {
	recs   []kgo.Record
	hdrs   []kgo.RecordHeader
	buf    []byte
	blocks [][]byte // buf is blocks[block]
	block  int
}

// reset makes the arena's room for records free again. Caller: nothing
// handed out before is read again (the producer flushed it).
func (a *arena) reset(records int) {
	if cap(a.recs) < records {
		a.recs = make([]kgo.Record, 0, records)
	}
	if cap(a.hdrs) < 4*records {
		a.hdrs = make([]kgo.RecordHeader, 0, 4*records)
	}
	a.recs, a.hdrs, a.block = a.recs[:0], a.hdrs[:0], 0
	a.buf = nil
	if len(a.blocks) > 0 {
		a.buf = a.blocks[0][:0]
	}
}

// free returns room to append a record's bytes to; keep takes them.
func (a *arena) free() []byte {
	if a == nil {
		return nil
	}
	if cap(a.buf)-len(a.buf) < 1024 {
		if a.buf != nil {
			a.block++
		}
		if a.block == len(a.blocks) {
			a.blocks = append(a.blocks, make([]byte, 0, 64<<10))
		}
		a.buf = a.blocks[a.block][:0]
	}
	return a.buf[len(a.buf):len(a.buf)]
}

// keep marks b, appended to free(), as taken: b stayed in the block unless
// it outgrew the room, and then append gave it an array of its own.
func (a *arena) keep(b []byte) []byte {
	if a != nil && len(b) <= cap(a.buf)-len(a.buf) {
		a.buf = a.buf[:len(a.buf)+len(b)]
	}
	return b[:len(b):len(b)]
}

// record returns a record to fill.
func (a *arena) record() *kgo.Record {
	if a == nil || len(a.recs) == cap(a.recs) {
		return new(kgo.Record)
	}
	a.recs = a.recs[:len(a.recs)+1]
	return &a.recs[len(a.recs)-1]
}

// headers returns n empty headers with room for one more (a reason).
func (a *arena) headers(n int) []kgo.RecordHeader {
	if a == nil || cap(a.hdrs)-len(a.hdrs) < n+1 {
		return make([]kgo.RecordHeader, n, n+1)
	}
	at := len(a.hdrs)
	a.hdrs = a.hdrs[:at+n+1]
	return a.hdrs[at : at+n : at+n+1]
}

func eventRecord(t kafka.Topics, codec *events.Codec, e events.Event, a *arena) *kgo.Record {
	e.Time = e.Time.Truncate(time.Millisecond)
	val := a.keep(codec.AppendEncode(a.free(), e))
	// The three header values in one slice.
	vals := a.keep(append(append(append(a.free(), e.SourceID...), e.ID...), e.Name...))
	x, y := len(e.SourceID), len(e.SourceID)+len(e.ID)
	hdrs := a.headers(3)
	hdrs[0] = kgo.RecordHeader{Key: kafka.HeaderSource, Value: vals[:x:x]}
	hdrs[1] = kgo.RecordHeader{Key: kafka.HeaderEventID, Value: vals[x:y:y]}
	hdrs[2] = kgo.RecordHeader{Key: kafka.HeaderEventName, Value: vals[y:]}
	r := a.record()
	switch {
	case e.Identity == "":
		*r = kgo.Record{Topic: t.Pending, Key: a.keep(e.AppendPendingKey(a.free())), Value: val, Headers: hdrs}
	case utf8.RuneCountInString(e.Identity) > heap.MaxIdentityLen:
		hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(fmt.Sprintf("identity longer than %d characters", heap.MaxIdentityLen))})
		*r = kgo.Record{Topic: t.EventsDLQ, Key: a.keep(e.AppendPendingKey(a.free())), Value: val, Headers: hdrs}
	default:
		*r = kgo.Record{Topic: t.Events, Key: a.keep(e.AppendKey(a.free())), Value: val, Headers: hdrs}
	}
	return r
}
