package materializer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// rawPending is e's heap.events.pending record with value v in place of
// this build's encoding.
func (r *rig) rawPending(e events.Event, v []byte) *kgo.Record {
	rec := r.pendingRecord(e)
	rec.Value = v
	return rec
}

// releasedEvents reads want events of heap.events.
func (r *rig) releasedEvents(want int) map[string]events.Event {
	r.t.Helper()
	out := map[string]events.Event{}
	for _, rec := range kafkatest.Consume(r.t, r.brokers, r.topics.Events, want, 20*time.Second) {
		e, err := r.codec.Decode(rec.Value)
		if err != nil {
			r.t.Fatal(err)
		}
		out[e.ID] = e
	}
	return out
}

// TestReleasesOtherVersions: pending events written by a version 2 writer,
// in single-object encoding (a version this build lists) or the Confluent
// wire format (a schema only the registry knows), wait and are released
// like any other, every field kept; none is dead-lettered.
func TestReleasesOtherVersions(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	for _, framing := range []string{"single-object", "confluent"} {
		t.Run(framing, func(t *testing.T) {
			r := newRig(t)
			e := r.event("acme", "carol@example.com", "v2-"+framing)
			e.IP, e.Tags, e.Lineage.Topic = "192.0.2.7", []string{"a", "b"}, "mailchimp.raw"
			var value []byte
			var fetches func() int // the registry's answers about the V2 id
			switch framing {
			case "single-object":
				r.codec = eventstest.Codec(t)
				value = eventstest.SingleObjectV2(t, e, "Mozilla/5.0")
			case "confluent":
				var srv *registrytest.Server
				var id uint32
				r.codec, srv, id = eventstest.RegistryV2(t, r.topics.Pending+"-value", r.topics.Events+"-value", r.topics.Pending+"-value")
				value = eventstest.ConfluentV2(t, id, e, "Mozilla/5.0")
				srv.Fail(503, 503) // the registry restarting: the batch waits, nothing is dead-lettered
				fetches = func() int { return srv.Requests(fmt.Sprintf("GET /schemas/ids/%d", id)) }
			}
			r.run(r.config(nil))
			r.produce(r.rawPending(e, value))
			r.waitPending("acme", 1)
			r.produce(r.bind("carol@example.com", "User-C"))
			got := r.releasedEvents(1)[e.ID]
			want := e
			want.Identity = "User-C"
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("released (-want +got):\n%s", diff)
			}
			r.waitPending("acme", 0)
			if dead := r.report("acme").DeadLettered; len(dead) != 0 {
				t.Errorf("dead letters %v", dead)
			}
			if fetches != nil && fetches() != 3 {
				t.Errorf("the schema was asked for %d times, want 3 (two 503s, then once)", fetches())
			}
		})
	}
}

// TestUndecodablePendingDeadLettered: a pending record no known schema
// decodes is not skipped: it goes to heap.events.dlq with its reason (the
// fingerprint, for an unknown version), is tombstoned in pending, and
// counted; the events around it are indexed as usual.
func TestUndecodablePendingDeadLettered(t *testing.T) {
	r := newRig(t)
	r.run(r.config(nil))
	unknown := r.event("acme", "dave@example.com", "unknown-version")
	garbage := r.event("acme", "erin@example.com", "garbage")
	good := r.event("acme", "fay@example.com", "good")
	r.produce(
		r.rawPending(unknown, eventstest.SingleObjectV2(t, unknown, "")), // this codec does not list V2
		r.rawPending(garbage, []byte("not avro at all")),
		r.pendingRecord(good),
	)
	dead := kafkatest.Consume(t, r.brokers, r.topics.EventsDLQ, 2, 20*time.Second)
	reasons := map[string]string{}
	for _, rec := range dead {
		id := kafka.Header(rec, kafka.HeaderEventID)
		reasons[id] = kafka.Header(rec, kafka.HeaderReason)
		if origin := kafka.Header(rec, kafka.HeaderOrigin); !strings.HasPrefix(origin, r.topics.Pending+"/") {
			t.Errorf("%s: origin %q", id, origin)
		}
		if kafka.Header(rec, kafka.HeaderSource) != "acme" {
			t.Errorf("%s: the source header was not kept", id)
		}
	}
	fp := fmt.Sprintf("%016x", eventstest.V2Fingerprint(t))
	if reason := reasons["unknown-version"]; !strings.HasPrefix(reason, "undecodable: ") || !strings.Contains(reason, fp) {
		t.Errorf("reason %q, want it to name fingerprint %s", reason, fp)
	}
	if reason := reasons["garbage"]; !strings.HasPrefix(reason, "undecodable: ") {
		t.Errorf("reason %q", reason)
	}
	want := []string{string(garbage.PendingKey()), string(unknown.PendingKey())}
	if got := r.tombstones(5); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tombstones %q, want %q", got, want)
	}
	r.waitPending("acme", 1) // the good event waits for its identity
	if n := r.report("acme").DeadLettered[status.ReasonUnparseable]; n != 2 {
		t.Errorf("counted %d undecodable, want 2", n)
	}
}
