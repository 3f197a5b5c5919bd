package replay_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/exactlyonce"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/replay"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipeline is the real mapper and emitter, in process, on a test's topics,
// delivering to a Heap stand-in.
type pipeline struct {
	t        *testing.T
	brokers  []string
	prefix   string
	topics   kafka.Topics
	redisURL string
	sink     *heaptest.Server
	cl       *kgo.Client // the test's producer, and what Replay and Redrive use
	codec    *events.Codec
	deps     *service.Deps
	stop     func()
}

func newPipeline(t *testing.T, opts ...heaptest.Option) *pipeline {
	t.Helper()
	p := &pipeline{t: t, brokers: kafkatest.Brokers(t), prefix: kafkatest.Prefix(t), redisURL: redistest.URL(t), sink: heaptest.NewServer(t, opts...)}
	p.topics = kafka.NewTopics(p.prefix)
	var err error
	if p.cl, err = kgo.NewClient(kgo.SeedBrokers(p.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.topics.Ensure(ctx, p.cl, 3, -1); err != nil {
		t.Fatal(err)
	}
	if p.codec, err = events.NewCodec(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pipeline) app(source string) string { return p.prefix + "app-" + source }

func (p *pipeline) sources(ids ...string) *source.Sources {
	p.t.Helper()
	var list []source.Source
	for _, id := range ids {
		list = append(list, source.Source{ID: id, HeapAppID: p.app(id)})
	}
	s, err := source.New(list...)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// start runs the mapper and emitter for these sources, replacing the
// running ones (as a redeploy with a new SOURCES_FILE would).
func (p *pipeline) start(sources *source.Sources) {
	t := p.t
	t.Helper()
	if p.stop != nil {
		p.stop()
	}
	env, err := config.LoadEnv(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	env.KafkaBrokers, env.TopicPrefix, env.RedisURL = p.brokers, p.prefix, p.redisURL
	env.HeapAPIURL, env.HeapTimeout, env.InstanceID, env.Partitions = p.sink.URL, 5*time.Second, "replay-test", 3
	ctx, cancel := context.WithCancel(context.Background())
	d, err := service.Open(ctx, env, sources, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), p.brokers)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p.deps = d
	var wg sync.WaitGroup
	for _, run := range []func(context.Context, *service.Deps) error{service.Mapper, service.Emitter} {
		wg.Go(func() {
			if err := run(ctx, d); err != nil {
				t.Errorf("pipeline: %v", err)
			}
		})
	}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			d.Close()
		})
	}
	t.Cleanup(p.stop)
}

// rawOpen is a Mandrill open of message i to email.
func rawOpen(i int, email string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"event":"open","ts":%d,"_id":"msg-%d","ip":"192.0.2.%d","msg":{"_id":"msg-%d","ts":%d,"email":%q,"subject":"Order %d"}}`,
		at.Unix(), i, i%250, i, at.Unix(), email, i)
}

// produce publishes raw units as ingress does, with the given record time.
func (p *pipeline) produce(in []exactlyonce.Input, at []time.Time) {
	p.t.Helper()
	var recs []*kgo.Record
	for i, u := range in {
		recs = append(recs, &kgo.Record{Topic: p.topics.Raw, Key: []byte(u.Source), Value: u.Raw, Timestamp: at[i], Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(u.Source)},
			{Key: kafka.HeaderKind, Value: []byte(u.Kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(at[i].Format(time.RFC3339Nano))},
		}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		p.t.Fatal(err)
	}
}

// await polls cond until it holds, failing the test (with the Heap
// stand-in's counts) after 90 s.
func (p *pipeline) await(what string, cond func() bool) {
	p.t.Helper()
	defer func() {
		if p.t.Failed() {
			p.t.Logf("Heap stand-in: %+v", p.sink.Stats())
		}
	}()
	testsupport.WaitFor(p.t, what, 90*time.Second, cond)
}

// metric sums the samples of a counter whose labels contain all of want.
func (p *pipeline) metric(name string, want ...string) float64 {
	rec := httptest.NewRecorder()
	p.deps.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var sum float64
	sc := bufio.NewScanner(rec.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if i := strings.LastIndexByte(line, ' '); ok && i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

func (p *pipeline) accepted() map[string]heaptest.Event {
	out := map[string]heaptest.Event{}
	for _, a := range p.sink.Accepted() {
		out[a.Event.IdempotencyKey] = a.Event
	}
	return out
}

func delivered(sink *heaptest.Server) []exactlyonce.Delivered {
	var out []exactlyonce.Delivered
	for _, a := range sink.Accepted() {
		out = append(out, exactlyonce.Delivered{AppID: a.AppID, Event: a.Event})
	}
	return out
}

// TestReplayDay runs two days of events through the pipeline, then replays
// the first day of mailchimp.raw: with the emitter's ledger, then without it
// (Heap's idempotency key is the last guard), and Heap's set stays the same;
// then with new keys for one source, and Heap gets a second copy of those.
func TestReplayDay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: the whole pipeline on kfake and Redis, replayed three times")
	}
	p := newPipeline(t)
	srcs := p.sources("s0", "s1")
	began := time.Now()
	p.start(srcs)

	day1 := time.Now().UTC().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	var in []exactlyonce.Input
	var at []time.Time
	const perDay = 60
	for i := range 2 * perDay {
		src := fmt.Sprintf("s%d", i%2)
		when := day1.Add(time.Duration(i/perDay)*24*time.Hour + time.Duration(i%perDay)*time.Minute)
		in = append(in, exactlyonce.Input{Source: src, Kind: mailchimp.KindMandrillEvent, Raw: rawOpen(i, fmt.Sprintf("user%d@example.com", i%17), when)})
		at = append(at, when)
	}
	expected, err := exactlyonce.Expected(srcs, in)
	if err != nil {
		t.Fatal(err)
	}
	p.produce(in, at)
	p.await("every event in Heap", func() bool { return p.sink.Stats().Accepted == len(expected) })
	if rep := exactlyonce.Check(expected, delivered(p.sink), nil); !rep.OK() {
		t.Fatalf("first pass: %s", rep)
	}
	before := p.accepted()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	day := replay.Options{Topics: p.topics, Topic: p.topics.Raw, From: day1, To: day1.Add(24 * time.Hour), Codec: p.codec}

	dry := day
	dry.DryRun = true
	res, err := replay.Replay(ctx, p.cl, dry)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != perDay || res.Produced != 0 || res.Scanned < perDay {
		t.Fatalf("dry run: %s; want %d matched, none produced", res, perDay)
	}

	// With the ledger: the emitter skips what Heap already took.
	res, err = replay.Replay(ctx, p.cl, day)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != perDay || res.Produced != perDay || res.Targets[p.topics.Raw] != perDay {
		t.Fatalf("replay: %s; want %d to %s", res, perDay, p.topics.Raw)
	}
	p.await("the replayed day skipped by the ledger", func() bool {
		return p.metric("emitter_events_total", `outcome="already_delivered"`) >= perDay
	})
	if got := p.metric("emitter_events_total", `outcome="already_delivered"`); got != perDay {
		t.Errorf("%v events skipped by the ledger, want %d", got, perDay)
	}

	// Without the ledger (expired, or Redis flushed): Heap's idempotency
	// key dedupes, and the stand-in counts the duplicates.
	rdb := redis.NewClient(mustParseURL(t, p.redisURL))
	defer rdb.Close()
	for _, s := range []string{"s0", "s1"} {
		keys, err := rdb.Keys(ctx, "mh:delivered:{"+p.app(s)+"}:*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("ledger keys of %s: %d, %v", s, len(keys), err)
		}
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if res, err = replay.Replay(ctx, p.cl, day); err != nil || res.Produced != perDay {
		t.Fatalf("second replay: %s, %v", res, err)
	}
	p.await("the replayed day deduplicated by Heap", func() bool { return p.sink.Stats().Duplicates >= perDay })
	if got, want := p.accepted(), before; len(got) != len(want) {
		t.Fatalf("Heap holds %d events after two replays, want the %d it had", len(got), len(want))
	}
	if rep := exactlyonce.Check(expected, delivered(p.sink), nil); !rep.OK() {
		t.Fatalf("after replays: %s", rep)
	}
	if st := p.sink.Stats(); st.Duplicates != perDay {
		t.Errorf("Heap deduplicated %d events, want %d", st.Duplicates, perDay)
	}

	// heap.events again (every mapped record so far, the replays' among
	// them): the emitter's ledger and Heap's idempotency keep one copy.
	skipped, dups := p.metric("emitter_events_total", `outcome="already_delivered"`), p.sink.Stats().Duplicates
	mapped := day
	mapped.Topic, mapped.From, mapped.To = p.topics.Events, began, time.Time{}
	if res, err = replay.Replay(ctx, p.cl, mapped); err != nil || res.Produced != 4*perDay {
		t.Fatalf("replay of heap.events: %s, %v; want the %d records the mapper wrote", res, err, 4*perDay)
	}
	p.await("heap.events replayed", func() bool {
		return p.metric("emitter_events_total", `outcome="already_delivered"`)-skipped+float64(p.sink.Stats().Duplicates-dups) >= float64(res.Produced)
	})
	if got := p.accepted(); len(got) != len(before) {
		t.Fatalf("Heap holds %d events after replaying heap.events, want the %d it had", len(got), len(before))
	}

	// New keys: a second copy of s0's day in Heap, each under a new id.
	salted := day
	salted.Source, salted.NewKeys = "s0", true
	res, err = replay.Replay(ctx, p.cl, salted)
	if err != nil || res.Produced != perDay/2 || res.Salt == "" {
		t.Fatalf("replay with new keys: %s (salt %q), %v", res, res.Salt, err)
	}
	p.await("the second copy", func() bool { return p.sink.Stats().Accepted >= len(before)+perDay/2 })
	rep := exactlyonce.Check(expected, delivered(p.sink), nil)
	if len(rep.Unexpected) != perDay/2 || len(rep.Twice) != perDay/2 || len(rep.Missing) != 0 {
		t.Fatalf("after new keys: %s; want %d events kept twice under new keys", rep, perDay/2)
	}
	for _, id := range rep.Unexpected {
		if app := p.sinkApp(id); app != p.app("s0") {
			t.Errorf("second copy %s went to app %s, want s0's", id, app)
		}
	}
	t.Logf("a day of %d raw events replayed twice (the ledger skipped it, then Heap deduplicated it), all %d heap.events records replayed, new keys: %d second copies; Heap deduplicated %d in all",
		perDay, 4*perDay, len(rep.Unexpected), p.sink.Stats().Duplicates)
}

func (p *pipeline) sinkApp(id string) string {
	for _, a := range p.sink.Accepted() {
		if a.Event.IdempotencyKey == id {
			return a.AppID
		}
	}
	return ""
}

func mustParseURL(t *testing.T, url string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestRedriveByReason dead-letters events Heap refuses for two reasons and
// a raw unit of a source not configured yet; once fixed, redriving one
// reason brings exactly those back, and the raw unit is mapped once its
// source exists. Redriving again changes nothing in Heap.
func TestRedriveByReason(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: the whole pipeline on kfake and Redis, redriven twice")
	}
	var refusing atomic.Bool
	refusing.Store(true)
	p := newPipeline(t, heaptest.FaultFunc(func(req heaptest.Request) *heaptest.Fault {
		if !refusing.Load() {
			return nil
		}
		for _, e := range req.Events {
			if r, ok := strings.CutPrefix(e.Identity, "refuse-"); ok {
				return &heaptest.Fault{Status: 400, Body: fmt.Sprintf(`{"error":"reason-%c: identity blocked"}`, r[0])}
			}
		}
		return nil
	}))
	p.start(p.sources("s0"))

	now := time.Now().UTC()
	var in []exactlyonce.Input
	emails := []string{"refuse-a1@example.com", "refuse-a2@example.com", "refuse-a3@example.com", "refuse-b1@example.com", "refuse-b2@example.com"}
	for i := range 10 {
		emails = append(emails, fmt.Sprintf("ok%d@example.com", i))
	}
	for i, e := range emails {
		in = append(in, exactlyonce.Input{Source: "s0", Kind: mailchimp.KindMandrillEvent, Raw: rawOpen(i, e, now)})
	}
	in = append(in, exactlyonce.Input{Source: "late", Kind: mailchimp.KindMandrillEvent, Raw: rawOpen(99, "late@example.com", now)})
	at := make([]time.Time, len(in))
	for i := range at {
		at[i] = now
	}
	p.produce(in, at)
	kafkatest.Consume(t, p.brokers, p.topics.EventsDLQ, 5, 90*time.Second)
	kafkatest.Consume(t, p.brokers, p.topics.RawDLQ, 1, 90*time.Second)
	p.await("the good events", func() bool { return p.sink.Stats().Accepted == 10 })

	// The fixes: Heap takes the identities, the late source is configured.
	refusing.Store(false)
	all := p.sources("s0", "late")
	p.start(all)
	expected, err := exactlyonce.Expected(all, in)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := replay.Options{Topics: p.topics, Topic: p.topics.EventsDLQ, Reason: "reason-a", Codec: p.codec}
	res, err := replay.Redrive(ctx, p.cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scanned != 5 || res.Matched != 3 || res.Produced != 3 || res.Targets[p.topics.Events] != 3 {
		t.Fatalf("redrive reason-a: %s; want 3 of 5 to %s", res, p.topics.Events)
	}
	raw := replay.Options{Topics: p.topics, Topic: p.topics.RawDLQ, Source: "late"}
	if res, err = replay.Redrive(ctx, p.cl, raw); err != nil || res.Produced != 1 || res.Targets[p.topics.Raw] != 1 {
		t.Fatalf("redrive the late source: %s, %v", res, err)
	}
	p.await("the redriven events", func() bool { return p.sink.Stats().Accepted >= 14 })
	for _, e := range p.accepted() {
		if strings.HasPrefix(e.Identity, "refuse-b") {
			t.Errorf("a reason-b letter was delivered: not redriven")
		}
	}
	rep := exactlyonce.Check(expected, delivered(p.sink), nil)
	if rep.Delivered != 14 || len(rep.Missing) != 2 || len(rep.Unexpected) != 0 || len(rep.Twice) != 0 {
		t.Fatalf("after redrive: %s; want 14 delivered and the 2 reason-b letters left", rep)
	}

	// Again: deterministic ids, so Heap keeps one copy.
	if res, err = replay.Redrive(ctx, p.cl, opts); err != nil || res.Produced != 3 {
		t.Fatalf("second redrive: %s, %v", res, err)
	}
	p.await("the second redrive skipped", func() bool {
		return p.metric("emitter_events_total", `outcome="already_delivered"`) >= 3
	})
	if rep := exactlyonce.Check(expected, delivered(p.sink), nil); rep.Delivered != 14 || len(rep.Twice) != 0 || len(rep.Unexpected) != 0 {
		t.Fatalf("after a second redrive: %s", rep)
	}
	if got := p.sink.Stats().Accepted; got != 14 {
		t.Errorf("Heap holds %d events after a second redrive, want 14", got)
	}
}

// TestRedriveUnmatchedToPending sends an unmatched event back to
// heap.events.pending with its wait restarted, and refuses a topic that
// holds no dead letters.
func TestRedriveUnmatchedToPending(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	e := events.Event{ID: "ev1", SourceID: "s0", AppID: "app", EmailKey: events.EmailKey("a@example.com"), Name: events.NameOpen, Time: time.Now().UTC().Truncate(time.Millisecond)}
	val, err := codec.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	letter := &kgo.Record{Topic: topics.EventsDLQ, Key: e.PendingKey(), Value: val, Headers: []kgo.RecordHeader{
		{Key: kafka.HeaderSource, Value: []byte("s0")},
		{Key: kafka.HeaderReason, Value: []byte("unmatched: no Heap identity for this email after 168h0m0s")},
		{Key: kafka.HeaderOrigin, Value: []byte(topics.Pending)},
	}}
	if err := cl.ProduceSync(ctx, letter).FirstErr(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	res, err := replay.Redrive(ctx, cl, replay.Options{Topics: topics, Topic: topics.EventsDLQ, Reason: "unmatched", Codec: codec, Now: func() time.Time { return now }})
	if err != nil || res.Targets[topics.Pending] != 1 {
		t.Fatalf("redrive: %s, %v", res, err)
	}
	r := kafkatest.Consume(t, brokers, topics.Pending, 1, 30*time.Second)[0]
	if string(r.Key) != string(e.PendingKey()) || string(r.Value) != string(val) {
		t.Error("the redriven event's key or value changed")
	}
	if got := kafka.Header(r, replay.HeaderPendingSince); got != now.Format(time.RFC3339Nano) {
		t.Errorf("pending-since = %q, want %q", got, now.Format(time.RFC3339Nano))
	}
	if kafka.Header(r, kafka.HeaderReason) != "" || kafka.Header(r, kafka.HeaderOrigin) != "" {
		t.Error("reason or origin kept")
	}
	if got := kafka.Header(r, kafka.HeaderRedrivenFrom); !strings.HasPrefix(got, topics.EventsDLQ+"/0/") {
		t.Errorf("redriven-from = %q", got)
	}
	if _, err := replay.Redrive(ctx, cl, replay.Options{Topics: topics, Topic: topics.Raw}); err == nil {
		t.Error("redrive of mailchimp.raw: no error")
	}
	if _, err := replay.Replay(ctx, cl, replay.Options{Topics: topics, Topic: topics.RawDLQ}); err == nil {
		t.Error("replay of a dead-letter topic: no error")
	}
}
