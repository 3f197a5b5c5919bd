package emitter_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestHeapEvent: the Track API event of a mapped event, its properties the
// mapping's (mapping.AppendHeapProperties, tested there).
func TestHeapEvent(t *testing.T) {
	at := time.Date(2026, 10, 2, 15, 2, 11, 0, time.UTC)
	e := events.Event{ID: "id1", Identity: "jordan@example.com", Name: events.NameClick, Time: at,
		CampaignID: "c1", CampaignTitle: strings.Repeat("é", 3000), ListID: "l1", IP: "192.0.2.44",
		URL: "https://x.example/?a=1&b=2"}
	got := emitter.HeapEvent(e)
	if got.Identity != e.Identity || got.Event != "Click Email Link" || got.IdempotencyKey != "id1" ||
		got.Timestamp != "2026-10-02T15:02:11.000Z" {
		t.Fatalf("%+v", got)
	}
	want := mapping.AppendHeapProperties(nil, e, got.Timestamp)
	if diff := cmp.Diff(want, got.Properties); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
}

type harness struct {
	brokers []string
	topics  kafka.Topics
	codec   *events.Codec
	sink    *heaptest.Server
	sources *source.Sources
	prefix  string
}

func newHarness(t *testing.T, opts ...heaptest.Option) *harness {
	t.Helper()
	return newHarnessOf(t, 3, opts...)
}

// newHarnessOf is newHarness with topics of the given partitions.
func newHarnessOf(t *testing.T, partitions int32, opts ...heaptest.Option) *harness {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	h := &harness{brokers: brokers, topics: kafkatest.Topics(t, brokers, partitions), sink: heaptest.NewServer(t, opts...),
		prefix: kafkatest.Prefix(t)}
	var err error
	if h.codec, err = events.NewCodec(); err != nil {
		t.Fatal(err)
	}
	if h.sources, err = source.New(source.Source{ID: "acme", HeapAppID: h.prefix + "app"},
		source.Source{ID: "beta", HeapAppID: h.prefix + "beta"}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) produce(t *testing.T, evs ...events.Event) { h.produceTo(t, -1, evs...) }

// produceTo writes evs to one partition, or by key when partition is -1.
func (h *harness) produceTo(t *testing.T, partition int32, evs ...events.Event) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(
		func(topic string) func(*kgo.Record, int) int {
			hash := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
			return func(r *kgo.Record, n int) int {
				if partition >= 0 {
					return int(partition)
				}
				return hash.Partition(r, n)
			}
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, e := range evs {
		v, err := h.codec.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: h.topics.Events, Key: e.Key(), Value: v,
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderEventID, Value: []byte(e.ID)}}})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) event(i int, source string) events.Event {
	src, _ := h.sources.Get(source)
	return events.Event{ID: fmt.Sprintf("%s-%d", source, i), SourceID: source, AppID: src.HeapAppID,
		Identity: fmt.Sprintf("user%d@example.com", i%7), EmailKey: "k", Name: events.NameOpen,
		Time: time.Date(2026, 10, 2, 15, 0, i%60, 0, time.UTC), CampaignID: "c1", CampaignTitle: "October"}
}

// run starts an emitter and returns a stop function that waits for it.
func (h *harness) run(t *testing.T, timeout time.Duration, opts ...func(*emitter.Config)) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := emitter.Config{
		Brokers: h.brokers, Topics: h.topics, Group: h.prefix + "emitter", Sources: h.sources, Codec: h.codec,
		Heap: &heap.Client{Timeout: timeout}, HeapURL: h.sink.URL, Log: zaptest.NewLogger(t),
		MaxBackoff: 500 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	go func() { done <- emitter.Run(ctx, cfg) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emitter.Run: %v", err)
		}
	}
}

// waitWithin bounds the tests' waits for the emitter, on kfake or Kafka.
const waitWithin = 30 * time.Second

// TestEmitterDeliversThroughFaults: 5xx, 429 with Retry-After, a timeout and
// a malformed 2xx answer are retried; a poison event and an undecodable
// record are dead-lettered with a reason; offsets are committed after.
func TestEmitterDeliversThroughFaults(t *testing.T) {
	testsupport.Integration(t, "emitter on kfake against a faulty Heap stand-in, real retry back-off")
	h := newHarness(t)
	h.sink.Inject(
		heaptest.Fault{Status: 503, Body: "unavailable"},
		heaptest.Fault{Status: 429, RetryAfter: "1"},
		heaptest.Fault{Status: 200, Delay: 2 * time.Second}, // longer than the client's timeout
		heaptest.Fault{Status: 500, Times: 2},
	)
	var evs []events.Event
	for i := range 2500 {
		evs = append(evs, h.event(i, "acme"))
	}
	for i := range 30 {
		evs = append(evs, h.event(i, "beta"))
	}
	poison := h.event(9999, "acme")
	poison.Identity = strings.Repeat("p", 300)
	evs = append(evs, poison)
	h.produce(t, evs...)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	defer cl.Close()
	// One undecodable at once; one whose routing fields decode and the rest
	// does not (found when its request is built).
	cut, err := h.codec.Encode(h.event(8888, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	cut = cut[:len(cut)-3]
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: h.topics.Events, Value: []byte("not avro")},
		&kgo.Record{Topic: h.topics.Events, Value: cut}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	stop := h.run(t, 500*time.Millisecond)
	testsupport.WaitFor(t, "2530 events in Heap", waitWithin, func() bool {
		return len(h.sink.Accepted()) == 2530
	})
	dead := kafkatest.Consume(t, h.brokers, h.topics.EventsDLQ, 3, 30*time.Second)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	var reasons []string
	poisoned, undecodable := 0, 0
	for _, d := range dead {
		r := kafka.Header(d, kafka.HeaderReason)
		reasons = append(reasons, r)
		if strings.Contains(r, "identity longer than 255") {
			poisoned++
			// The dead letter is the record as polled: replayable.
			e, err := h.codec.Decode(d.Value)
			if err != nil || e.ID != poison.ID || string(d.Key) != string(poison.Key()) ||
				kafka.Header(d, kafka.HeaderEventID) != poison.ID ||
				!strings.HasPrefix(kafka.Header(d, kafka.HeaderOrigin), h.topics.Events+"/") {
				t.Errorf("poison dead letter: event %q, %v, key %q, headers %v", e.ID, err, d.Key, d.Headers)
			}
		}
		if strings.HasPrefix(r, "undecodable") {
			undecodable++
		}
	}
	if poisoned != 1 || undecodable != 2 {
		t.Errorf("reasons: %q, want one poison event and two undecodable", reasons)
	}
	// Committed offsets reach the end of every partition.
	adm := kadm.NewClient(cl)
	testsupport.WaitFor(t, "offsets committed", waitWithin, func() bool {
		ends, err := adm.ListEndOffsets(context.Background(), h.topics.Events)
		if err != nil {
			return false
		}
		committed, err := adm.FetchOffsets(context.Background(), h.prefix+"emitter")
		if err != nil {
			return false
		}
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			c, found := committed.Lookup(o.Topic, o.Partition)
			if o.Offset > 0 && (!found || c.At != o.Offset) {
				ok = false
			}
		})
		return ok
	})
	stop()
	st := h.sink.Stats()
	for _, a := range h.sink.Accepted() {
		if a.AppID == "" || a.IdempotencyKey == "" || a.Properties["Campaign Title"] != "October" {
			t.Fatalf("accepted %+v", a)
		}
	}
	// 2531 events to one app need at least three requests of at most 1000.
	if st.Requests < 3+5 || st.Throttled != 0 {
		t.Errorf("stats %+v", st)
	}

	// A restarted emitter in the same group sends nothing again.
	before := h.sink.Stats().Requests
	stop = h.run(t, 500*time.Millisecond)
	time.Sleep(time.Second)
	stop()
	if after := h.sink.Stats().Requests; after != before {
		t.Errorf("restart sent %d more requests", after-before)
	}
}

// Heap's answers may quote an address (an identity, a property): the dead
// letter's reason and the log lines carry Heap's answer with the address
// redacted, and the classification holds (a 503 retried, a 400
// dead-lettered).
func TestEmitterHidesHeapAnswers(t *testing.T) {
	const addr = "poison.person@example.com"
	h := newHarness(t, heaptest.FaultFunc(func(req heaptest.Request) *heaptest.Fault {
		for _, e := range req.Events {
			if e.Identity == addr {
				return &heaptest.Fault{Status: 400, Body: `{"error":"events[0]: identity \"` + addr + `\" is not allowed"}`}
			}
		}
		return nil
	}))
	h.sink.Inject(heaptest.Fault{Status: 503, Body: `{"error":"overloaded while storing user3@example.com"}`})
	var evs []events.Event
	for i := range 20 {
		evs = append(evs, h.event(i, "acme"))
	}
	poison := h.event(100, "acme")
	poison.Identity = addr
	evs = append(evs, poison)
	h.produce(t, evs...)

	core, logs := observer.New(zap.DebugLevel)
	stop := h.run(t, 5*time.Second, func(c *emitter.Config) { c.Log = zap.New(core) })
	testsupport.WaitFor(t, "20 events in Heap", waitWithin, func() bool {
		return len(h.sink.Accepted()) == 20
	})
	dead := kafkatest.Consume(t, h.brokers, h.topics.EventsDLQ, 1, 30*time.Second)
	stop()
	if len(dead) != 1 || kafka.Header(dead[0], kafka.HeaderEventID) != poison.ID {
		t.Fatalf("dead letters %v, want the poison event's", dead)
	}
	reason := kafka.Header(dead[0], kafka.HeaderReason)
	if strings.Contains(reason, "@") || strings.Contains(reason, "example.com") {
		t.Errorf("reason %q holds an address", reason)
	}
	// Operators select dead letters by the words of Heap's answer (ctl redrive -reason).
	if want := `heap: 400 Bad Request: {"error":"events[0]: identity \"[address]\" is not allowed"} (body sha256:`; !strings.Contains(reason, want) {
		t.Errorf("reason %q, want it to contain %q", reason, want)
	}
	retried := false
	for _, en := range logs.All() {
		line := en.Message + " " + fmt.Sprint(en.ContextMap())
		if strings.Contains(line, "@") || strings.Contains(line, "example.com") {
			t.Errorf("log line holds an address: %s", line)
		}
		if strings.Contains(line, `503 Service Unavailable: {"error":"overloaded while storing [address]"} (body sha256:`) {
			retried = true
		}
	}
	if !retried {
		t.Error("the 503 was not logged as retried with its redacted answer")
	}
}
