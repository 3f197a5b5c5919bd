package emitter

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// The unit tests' stand-ins for Kafka and Heap, and a loop wired to them.

// fakeKafka is the loop's Kafka client: it notes what the loop marks,
// commits, pauses, resumes and produces.
type fakeKafka struct {
	mu          sync.Mutex
	marked      map[tp]kgo.EpochOffset // the last record marked, per partition
	marks       int                    // MarkCommitRecords calls
	commits     int                    // CommitMarkedOffsets calls
	paused      map[tp]bool
	resumed     []tp
	produced    []*kgo.Record
	produceErrs []error // the next ProduceSync calls fail with these
	produces    int     // ProduceSync calls
}

func newFakeKafka() *fakeKafka {
	return &fakeKafka{marked: map[tp]kgo.EpochOffset{}, paused: map[tp]bool{}}
}

func (f *fakeKafka) PollRecords(context.Context, int) kgo.Fetches {
	panic("unit tests hand records to accept")
}

func (f *fakeKafka) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.produces++
	var err error
	if len(f.produceErrs) > 0 {
		err, f.produceErrs = f.produceErrs[0], f.produceErrs[1:]
	} else {
		f.produced = append(f.produced, rs...)
	}
	res := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		res[i] = kgo.ProduceResult{Record: r, Err: err}
	}
	return res
}

func (f *fakeKafka) MarkCommitRecords(rs ...*kgo.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marks++
	for _, r := range rs {
		f.marked[tp{r.Topic, r.Partition}] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
	}
}

func (f *fakeKafka) CommitMarkedOffsets(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits++
	return nil
}

func (f *fakeKafka) PauseFetchPartitions(m map[string][]int32) map[string][]int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			f.paused[tp{topic, p}] = true
		}
	}
	return m
}

func (f *fakeKafka) ResumeFetchPartitions(m map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			delete(f.paused, tp{topic, p})
			f.resumed = append(f.resumed, tp{topic, p})
		}
	}
}

// dead is what was dead-lettered: reasons by event id.
func (f *fakeKafka) dead() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := map[string]string{}
	for _, r := range f.produced {
		d[kafka.Header(r, kafka.HeaderEventID)] = kafka.Header(r, kafka.HeaderReason)
	}
	return d
}

// fakeHeap is Heap's Track API. It rejects (400) a whole request holding
// an event it refuses, as Heap does, and answers the requests numbered in
// faults (from 0) with their error instead, and an app's requests with 503
// while it is down.
type fakeHeap struct {
	mu       sync.Mutex
	refuse   map[string]bool // event ids
	faults   map[int]error
	down     map[string]bool // app ids
	requests [][]string      // each request's event ids
	outcomes []error         // each request's answer
	accepted map[string]int  // times each event was accepted
}

func newFakeHeap() *fakeHeap {
	return &fakeHeap{refuse: map[string]bool{}, faults: map[int]error{}, down: map[string]bool{}, accepted: map[string]int{}}
}

// refusal is Heap's answer to a request holding the refused event id.
func refusal(id string) error {
	return heap.Answer(400, 0, `{"error":"event `+id+` refused"}`)
}

func (h *fakeHeap) TrackEncoded(_ context.Context, _, app string, evs [][]byte) error {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = idempotencyKey(e)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.answer(app, ids)
	h.requests, h.outcomes = append(h.requests, ids), append(h.outcomes, err)
	return err
}

func (h *fakeHeap) answer(app string, ids []string) error {
	if err, ok := h.faults[len(h.requests)]; ok {
		return err
	}
	if h.down[app] {
		return heap.Answer(503, 0, "down")
	}
	for _, id := range ids {
		if h.refuse[id] {
			return refusal(id)
		}
	}
	for _, id := range ids {
		h.accepted[id]++
	}
	return nil
}

// idempotencyKey is the event id of an event as the emitter sends it.
func idempotencyKey(e []byte) string {
	var v struct {
		ID string `json:"idempotency_key"`
	}
	if err := json.Unmarshal(e, &v); err != nil {
		panic(err)
	}
	return v.ID
}

func (h *fakeHeap) setDown(app string, down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[app] = down
}

// answers counts the answers by the emitter's metric outcome.
func (h *fakeHeap) answers() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := map[string]int{}
	for _, err := range h.outcomes {
		switch {
		case err == nil:
			n["ok"]++
		case errors.Is(err, heap.ErrRejected):
			n["rejected"]++
		default:
			n["retryable"]++
		}
	}
	return n
}

// sizes are the requests' sizes, in order.
func (h *fakeHeap) sizes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []int
	for _, r := range h.requests {
		s = append(s, len(r))
	}
	return s
}

// testLoop is a loop on the fakes, its client unset for Run: for unit tests
// of its parts.
type testLoop struct {
	*loop
	kafka   *fakeKafka
	heap    *fakeHeap
	logs    *observer.ObservedLogs
	metrics *metrics.Pipeline
}

const (
	testTopic = "heap.events"
	testDLQ   = "heap.events.dlq"
)

// newTestLoop is a loop of two sources, acme and beta, of the Heap apps
// app-acme and app-beta.
func newTestLoop(t *testing.T, opts ...func(*Config)) *testLoop {
	t.Helper()
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	sources, err := source.New(source.Source{ID: "acme", HeapAppID: "app-acme"},
		source.Source{ID: "beta", HeapAppID: "app-beta"})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	tl := &testLoop{kafka: newFakeKafka(), heap: newFakeHeap(), logs: logs, metrics: metrics.New()}
	cfg := Config{Topics: kafka.Topics{Events: testTopic, EventsDLQ: testDLQ}, Sources: sources, Codec: codec,
		Heap: tl.heap, HeapURL: "https://heap.test", Metrics: tl.metrics, Log: zap.New(core), MaxBackoff: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	tl.loop = newLoop(cfg.withDefaults())
	tl.cl = tl.kafka
	return tl
}

var testTime = time.Date(2026, 10, 2, 15, 0, 0, 0, time.UTC)

// event is a mapped event of source, with id.
func event(source, id string) events.Event {
	return events.Event{ID: id, SourceID: source, AppID: "app-" + source, Identity: "user@example.com",
		EmailKey: "k", Name: events.NameOpen, Time: testTime, CampaignID: "c1", CampaignTitle: "October"}
}

// kafkaRecord is e as heap.events holds it, at offset of partition part.
func (tl *testLoop) kafkaRecord(t *testing.T, part int32, offset int64, e events.Event) *kgo.Record {
	t.Helper()
	v, err := tl.cfg.Codec.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: testTopic, Partition: part, Offset: offset, Key: e.Key(), Value: v,
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderEventID, Value: []byte(e.ID)}}}
}

// batch is a batch of acme's events of ids, on partition 0 at offsets
// from 0, prepared as a worker prepares it.
func (tl *testLoop) batch(t *testing.T, ids []string) prepared {
	t.Helper()
	key := tp{testTopic, 0}
	tl.assigned(context.Background(), nil, map[string][]int32{testTopic: {0}})
	p := tl.parts[key]
	src := tl.source("acme")
	var batch []*item
	for i, id := range ids {
		r := tl.kafkaRecord(t, 0, int64(i), event("acme", id))
		e := &entry{offset: r.Offset}
		p.entries = append(p.entries, e)
		it := &item{e: e, p: p, src: src, identity: "user@example.com", name: events.NameOpen, id: id, at: testTime.UnixMilli()}
		tl.compact(r, it, nil)
		batch = append(batch, it)
	}
	pr, dead := tl.encode(batch, &scratch{})
	if len(dead) > 0 {
		t.Fatalf("%d events not encodable", len(dead))
	}
	return pr
}

// counter is a counter's value.
func counter(t *testing.T, vec *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// retries are the waits logged before retrying what.
func (tl *testLoop) retries(what string) []time.Duration {
	var waits []time.Duration
	for _, e := range tl.logs.FilterMessage(what + " failed; retrying").All() {
		waits = append(waits, e.ContextMap()["in"].(time.Duration))
	}
	return waits
}

// done reports which of p's entries are done, in order.
func done(p *partition) []bool {
	var d []bool
	for _, e := range p.entries {
		d = append(d, e.done)
	}
	return d
}
