package emitter_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// produceRaw writes values as heap.events records of evs (keys and event
// id headers).
func (h *harness) produceRaw(t *testing.T, evs []events.Event, values [][]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i, e := range evs {
		recs = append(recs, &kgo.Record{Topic: h.topics.Events, Key: e.Key(), Value: values[i],
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderEventID, Value: []byte(e.ID)}}})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestEmitterReadsOtherVersions: a topic holding records of version 1 and
// of a version 2 writer, in single-object encoding (a version this build
// lists) and the Confluent wire format (a schema only the registry knows,
// fetched while the registry first fails), is delivered whole, each event
// as Heap would get it from version 1; only records of a schema that
// cannot be learned are dead-lettered, their reason naming it.
func TestEmitterReadsOtherVersions(t *testing.T) {
	for _, framing := range []string{"single-object", "confluent"} {
		t.Run(framing, func(t *testing.T) {
			h := newHarness(t)
			var evs []events.Event
			var values [][]byte
			var unknown []byte // a record of a schema this emitter cannot learn
			var wantReason string
			switch framing {
			case "single-object":
				h.codec = eventstest.Codec(t)
				for i := range 20 {
					e := h.event(i, "acme")
					evs = append(evs, e)
					if i%2 == 0 {
						values = append(values, eventstest.SingleObjectV2(t, e, "Mozilla/5.0"))
					} else {
						v, _ := h.codec.Encode(e)
						values = append(values, v)
					}
				}
				unknown = eventstest.SingleObjectV2(t, h.event(99, "acme"), "")
				unknown[2] ^= 0xFF // a fingerprint no version has
				wantReason = fmt.Sprintf("%016x", binary.LittleEndian.Uint64(unknown[2:10]))
			case "confluent":
				var srv *registrytest.Server
				var id uint32
				h.codec, srv, id = eventstest.RegistryV2(t, h.topics.Events+"-value", h.topics.Events+"-value")
				single, err := events.NewCodec()
				if err != nil {
					t.Fatal(err)
				}
				for i := range 30 {
					e := h.event(i, "acme")
					evs = append(evs, e)
					var v []byte
					switch i % 3 {
					case 0:
						v = eventstest.ConfluentV2(t, id, e, "Mozilla/5.0")
					case 1:
						v, _ = h.codec.Encode(e)
					case 2: // a topic migrating from single-object encoding
						v, _ = single.Encode(e)
					}
					values = append(values, v)
				}
				unknown = eventstest.ConfluentV2(t, 999, h.event(99, "acme"), "")
				wantReason = "schema id 999"
				srv.Fail(503, 503)
			}
			evs = append(evs, h.event(99, "acme"))
			values = append(values, unknown)
			h.produceRaw(t, evs, values)

			var once sync.Once
			run := h.run(t, 5*time.Second)
			stop := func() { once.Do(run) }
			defer stop()
			testsupport.WaitFor(t, "every known event in Heap", waitWithin, func() bool {
				return len(h.sink.Accepted()) == len(evs)-1
			})
			dead := kafkatest.Consume(t, h.brokers, h.topics.EventsDLQ, 1, 30*time.Second)
			if len(dead) != 1 || kafka.Header(dead[0], kafka.HeaderEventID) != "acme-99" {
				t.Fatalf("dead letters %v, want the unknown schema's record", dead)
			}
			if r := kafka.Header(dead[0], kafka.HeaderReason); !strings.HasPrefix(r, "undecodable: ") || !strings.Contains(r, wantReason) {
				t.Errorf("reason %q, want it to name %s", r, wantReason)
			}
			got := map[string]map[string]any{}
			for _, a := range h.sink.Accepted() {
				got[a.IdempotencyKey] = a.Properties
			}
			for _, e := range evs[:len(evs)-1] {
				if diff := cmp.Diff(heaptest.EventOf(emitter.HeapEvent(e)).Properties, got[e.ID]); diff != "" {
					t.Errorf("%s in Heap (-want +got):\n%s", e.ID, diff)
				}
			}
			stop() // nothing else was dead-lettered
			cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), h.topics.EventsDLQ)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(0)
			ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
			if n != 1 {
				t.Errorf("%d dead letters, want 1", n)
			}
		})
	}
}
