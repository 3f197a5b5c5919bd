// Package route is where a mapped event is written, stated once for every
// writer of heap.events: the mapper, and the materializer when it releases
// a pending event. An event goes to heap.events keyed by app and identity
// when it has an identity Heap accepts, to heap.events.pending keyed by app,
// email key and event id while its identity is unknown, and to
// heap.events.dlq (keyed as pending, with the reason) when its identity can
// never be sent. Its value is the events codec's encoding, its headers the
// source, event id and event name.
//
// It is apart from package events, which the pure mapping imports, because
// it builds Kafka records.
package route

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// Alloc hands out the memory of the records Record builds: the mapper's
// arenas hand out a transaction's records from a few large blocks.
type Alloc interface {
	// Free returns room to append a record's bytes to; Keep takes them,
	// returning them with their capacity capped.
	Free() []byte
	Keep(b []byte) []byte
	// Record returns a record to fill.
	Record() *kgo.Record
	// Headers returns n empty headers with room for one more (a reason).
	Headers(n int) []kgo.RecordHeader
}

// Record is e as it is written: its topic, key, value and headers.
func Record(t kafka.Topics, codec *events.Codec, e events.Event) *kgo.Record {
	return RecordIn(heapAlloc{}, t, codec, e)
}

// RecordIn is Record with the record's memory from a.
func RecordIn(a Alloc, t kafka.Topics, codec *events.Codec, e events.Event) *kgo.Record {
	e.Time = e.Time.Truncate(time.Millisecond) // what the schema keeps
	val := a.Keep(codec.AppendEncode(a.Free(), e))
	// The three header values in one slice.
	vals := a.Keep(append(append(append(a.Free(), e.SourceID...), e.ID...), e.Name...))
	x, y := len(e.SourceID), len(e.SourceID)+len(e.ID)
	hdrs := a.Headers(3)
	hdrs[0] = kgo.RecordHeader{Key: kafka.HeaderSource, Value: vals[:x:x]}
	hdrs[1] = kgo.RecordHeader{Key: kafka.HeaderEventID, Value: vals[x:y:y]}
	hdrs[2] = kgo.RecordHeader{Key: kafka.HeaderEventName, Value: vals[y:]}
	r := a.Record()
	switch {
	case e.Identity == "":
		*r = kgo.Record{Topic: t.Pending, Key: a.Keep(e.AppendPendingKey(a.Free())), Value: val, Headers: hdrs}
	case utf8.RuneCountInString(e.Identity) > heap.MaxIdentityLen:
		hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(fmt.Sprintf("identity longer than %d characters", heap.MaxIdentityLen))})
		*r = kgo.Record{Topic: t.EventsDLQ, Key: a.Keep(e.AppendPendingKey(a.Free())), Value: val, Headers: hdrs}
	default:
		*r = kgo.Record{Topic: t.Events, Key: a.Keep(e.AppendKey(a.Free())), Value: val, Headers: hdrs}
	}
	return r
}

// heapAlloc allocates each record on its own.
type heapAlloc struct{}

func (heapAlloc) Free() []byte                     { return nil }
func (heapAlloc) Keep(b []byte) []byte             { return b[:len(b):len(b)] }
func (heapAlloc) Record() *kgo.Record              { return new(kgo.Record) }
func (heapAlloc) Headers(n int) []kgo.RecordHeader { return make([]kgo.RecordHeader, n, n+1) }
