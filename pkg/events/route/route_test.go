package route_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/route"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// rec is what a record carries, comparable by cmp.
type rec struct {
	Topic, Key, Value string
	Headers           []kgo.RecordHeader
}

func flat(rs ...*kgo.Record) []rec {
	out := make([]rec, len(rs))
	for i, r := range rs {
		out[i] = rec{r.Topic, string(r.Key), string(r.Value), r.Headers}
	}
	return out
}

// TestRecord: an event with an identity goes to heap.events keyed by app
// and identity, one without to heap.events.pending keyed by its pending
// key, one whose identity Heap refuses to heap.events.dlq with the reason;
// each is the codec's encoding of the event (time in milliseconds) with
// the source, event id and name headers.
func TestRecord(t *testing.T) {
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	topics := kafka.NewTopics("t.")
	base := events.Event{ID: "ev1", SourceID: "acme", AppID: "app1", EmailKey: "k1", Name: events.NameOpen,
		Time: time.Date(2026, 10, 2, 14, 21, 9, 123456789, time.UTC)}
	long := strings.Repeat("é", heap.MaxIdentityLen+1)
	for _, tt := range []struct {
		name, identity, topic string
		key                   func(events.Event) []byte
		reason                string
	}{
		{"identity", "User-1", topics.Events, events.Event.Key, ""},
		{"no identity", "", topics.Pending, events.Event.PendingKey, ""},
		{"identity at Heap's limit", strings.Repeat("é", heap.MaxIdentityLen), topics.Events, events.Event.Key, ""},
		{"identity over Heap's limit", long, topics.EventsDLQ, events.Event.PendingKey, "identity longer than 255 characters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			e.Identity = tt.identity
			r := route.Record(topics, codec, e)
			e.Time = e.Time.Truncate(time.Millisecond)
			val, err := codec.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			hdrs := []kgo.RecordHeader{
				{Key: kafka.HeaderSource, Value: []byte("acme")},
				{Key: kafka.HeaderEventID, Value: []byte("ev1")},
				{Key: kafka.HeaderEventName, Value: []byte(events.NameOpen)},
			}
			if tt.reason != "" {
				hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(tt.reason)})
			}
			want := &kgo.Record{Topic: tt.topic, Key: tt.key(e), Value: val, Headers: hdrs}
			if diff := cmp.Diff(flat(want), flat(r)); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			got, err := codec.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

// blockAlloc hands out every record's bytes from one block, as an arena
// does.
type blockAlloc struct{ buf []byte }

func (a *blockAlloc) Free() []byte { return a.buf[len(a.buf):] }
func (a *blockAlloc) Keep(b []byte) []byte {
	a.buf = a.buf[:len(a.buf)+len(b)]
	return b[:len(b):len(b)]
}
func (a *blockAlloc) Record() *kgo.Record              { return new(kgo.Record) }
func (a *blockAlloc) Headers(n int) []kgo.RecordHeader { return make([]kgo.RecordHeader, n, n+1) }

// TestRecordIn: records built in an allocator's memory are the records
// Record builds, and one never overwrites another.
func TestRecordIn(t *testing.T) {
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	topics := kafka.NewTopics("")
	a := &blockAlloc{buf: make([]byte, 0, 1<<16)}
	var got, want []*kgo.Record
	for i, ident := range []string{"User-1", "", strings.Repeat("x", 300), "User-2"} {
		e := events.Event{ID: "ev" + string(rune('a'+i)), SourceID: "acme", AppID: "app1", EmailKey: "k1",
			Identity: ident, Name: events.NameClick, URL: "https://x.example/", Time: time.Unix(1759413940, 0)}
		got = append(got, route.RecordIn(a, topics, codec, e))
		want = append(want, route.Record(topics, codec, e))
	}
	if diff := cmp.Diff(flat(want...), flat(got...)); diff != "" {
		t.Errorf("records (-Record +RecordIn):\n%s", diff)
	}
}
