package exactlyonce_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/exactlyonce"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestRollingUpgrade: single-object encoding, release A (writes version 1,
// reads 1 and 2) upgraded to release B (writes 2, reads both).
func TestRollingUpgrade(t *testing.T) { rollingUpgrade(t, "A", "B", false) }

// TestRollingUpgradeRegistry: with a schema registry, the build that lists
// only version 1 upgraded to release B: the old build reads version 2
// records by fetching their schema by id.
func TestRollingUpgradeRegistry(t *testing.T) { rollingUpgrade(t, "v1", "B", true) }

// rollingUpgrade runs one mapper instance and two emitter instances while
// they are SIGKILLed and come back as the other release, with events and
// identities arriving all the while. The input comes in eight chunks; each
// step falls between the halves of one, while the killed process is at
// work on the first:
//
//	start       mapper old, emitters old + old; identities of group 0
//	chunk 1     SIGKILL mapper, back as new: mapper new + emitters old;
//	            identities of group 1: the new materializer releases the
//	            pending events the old mapper wrote
//	chunk 3     SIGKILL e1, back as new: emitters of both releases side by side
//	chunk 4     SIGKILL mapper, back as old: mapper old + emitters new and old;
//	            identities of group 2: the old materializer releases the
//	            pending events the new mapper wrote
//	chunk 5     SIGKILL e2, back as new: mapper old + emitters new + new
//	chunk 6     SIGKILL mapper, back as new: all new; identities of group 3
//
// The mapper going back to the old release is what a rolling upgrade of
// several instances does to a partition: it moves between instances of
// both releases as they restart; one instance makes each handover certain.
// Sources s2 and s3 join on a custom email property, so their events wait
// in heap.events.pending until the identity of their address arrives on
// heap.identities; s0 and s1 join on the email itself.
func rollingUpgrade(t *testing.T, oldRel, newRel string, withRegistry bool) {
	testsupport.Integration(t, "runs the mapper and emitters as child processes")
	const n, chunks = 12000, 8 // every address has three events in each quarter
	r := newRolling(t, oldRel, newRel, withRegistry, n)
	r.feed(0)
	r.mapper = startProc(t, "mapper", r.with("m", oldRel))
	r.e1 = startProc(t, "emitter", r.with("e1", oldRel))
	r.e2 = startProc(t, "emitter", r.with("e2", oldRel))
	r.step(fmt.Sprintf("start mapper %s, emitters %s + %s; identities of group 0", oldRel, oldRel, oldRel))
	for c := range chunks {
		var recs []*kgo.Record
		for _, i := range r.in[c*len(r.in)/chunks : (c+1)*len(r.in)/chunks] {
			recs = append(recs, i.record(r.topics.Raw))
		}
		// Each configuration does its share: the pipeline has caught up
		// with what came before (but for events waiting for an identity)
		// when a chunk starts. Each step comes between the halves of a
		// chunk: the mapper or emitter is at work on the first when
		// killed, and the second arrives meanwhile.
		produced := c * len(r.in) / chunks
		waitFor(t, fmt.Sprintf("the pipeline to catch up with %d inputs", produced), func() bool {
			mapped, events := r.tally.mapped()
			return mapped >= produced && len(r.sink.Accepted()) >= events
		}, r.state)
		r.produce(fmt.Sprintf("chunk %d", c), recs[:len(recs)/2])
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		r.upgradeStep(c)
		r.produce(fmt.Sprintf("chunk %d", c), recs[len(recs)/2:])
	}
	rep, elapsed := r.settle()
	r.report(rep, elapsed)
	r.check(rep)
}

// rolling is one rolling-upgrade run: its backends, input, processes, and
// what it has seen so far.
type rolling struct {
	t                *testing.T
	oldRel, newRel   string
	withRegistry     bool
	topics           kafka.Topics
	ad               *addressBook
	redisURL         string
	sink             *heaptest.Server
	env              []string
	in               []upgradeInput
	expected         map[string]events.Event
	cancel           context.CancelFunc
	deadEvents       *collector
	deadRaw          *collector
	tally            *versionTally
	index            *pending.Index
	prod             *kgo.Client
	mapper, e1, e2   *proc
	steps            []string
	began            time.Time
	oldEmittersUntil time.Time // the old emitters alone ran until then
	newEmittersFrom  time.Time // the new emitters alone ran from then
	forever          time.Time
	mark             int // what the mapper wrote as v1 when it went back to the old release
}

// newRolling sets up the backends, the input and the watchers of a run of
// n events; the processes are started by the run.
func newRolling(t *testing.T, oldRel, newRel string, withRegistry bool, n int) *rolling {
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.Prefix(t)
	r := &rolling{t: t, oldRel: oldRel, newRel: newRel, withRegistry: withRegistry,
		topics: ensureTopics(t, brokers, prefix, 4), ad: newAddressBook(t, prefix), redisURL: redistest.URL(t), sink: heaptest.NewServer(t)}
	r.env = []string{
		"KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"TOPIC_PREFIX=" + prefix,
		"REDIS_URL=" + r.redisURL,
		"HEAP_API_URL=" + r.sink.URL,
		"HEAP_TIMEOUT=5s",
		"SOURCES_FILE=" + r.ad.sourcesFile,
		"ADMIN_ADDR=127.0.0.1:0",
		"PENDING_SWEEP_INTERVAL=5s",
	}
	var regURL string
	if withRegistry {
		regURL = registrytest.New(t).URL
		r.env = append(r.env, "SCHEMA_REGISTRY_URL="+regURL)
	}
	r.in = r.ad.inputs(n)
	var err error
	if r.expected, err = exactlyonce.Expected(r.ad.sources, inputsOf(r.in)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	codec, _ := events.NewCodec()
	r.deadEvents = collect(ctx, t, brokers, r.topics.EventsDLQ, codec)
	r.deadRaw = collect(ctx, t, brokers, r.topics.RawDLQ, codec)
	r.tally = watchVersions(ctx, t, brokers, r.topics, regURL)
	t.Cleanup(cancel) // after the watchers': they wait for it
	rdb, err := redisconn.Open(r.redisURL, redistest.Options(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	r.index = pending.New(rdb)
	if r.prod, err = kgo.NewClient(kafkatest.Opts(t, brokers)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.prod.Close)
	r.began = time.Now()
	r.forever = r.began.Add(time.Hour)
	return r
}

func (r *rolling) produce(what string, recs []*kgo.Record) {
	r.t.Helper()
	pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer pcancel()
	if err := r.prod.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		r.t.Fatalf("produce %s: %v", what, err)
	}
}

// feed publishes the identities of an address group.
func (r *rolling) feed(group int) {
	r.produce(fmt.Sprintf("identities of group %d", group), r.ad.identities(r.topics, group))
}

// step records a step of the run for its report.
func (r *rolling) step(s string) {
	r.steps = append(r.steps, fmt.Sprintf("%4.1fs %s", time.Since(r.began).Seconds(), s))
}

// with is a process's environment: its instance id and release.
func (r *rolling) with(id, rel string) []string {
	return append(slices.Clone(r.env), "INSTANCE_ID="+id, "EO_RELEASE="+rel)
}

// deliveredBy counts the events Heap accepted within [from, to) by the
// schema version their heap.events record was written with.
func (r *rolling) deliveredBy(from, to time.Time) map[string]int {
	out := map[string]int{}
	for _, a := range r.sink.Accepted() {
		if !a.ReceivedAt.Before(from) && a.ReceivedAt.Before(to) {
			if v := r.tally.eventWriter(a.IdempotencyKey); v != "" {
				out[v]++
			}
		}
	}
	return out
}

// written counts what the mapper wrote in one version to both topics.
func (r *rolling) written(v string) int {
	return r.tally.count("events", v) + r.tally.count("pending", v)
}

// state is what a wait that timed out saw.
func (r *rolling) state() string {
	return fmt.Sprintf("after %s: heap.events %v, pending %v, released %v, Heap accepted %d: while the old emitters alone ran %v, since the new alone %v",
		time.Since(r.began).Round(100*time.Millisecond), r.tally.counts("events"), r.tally.counts("pending"), r.tally.released(), len(r.sink.Accepted()),
		r.deliveredBy(r.began, r.oldEmittersUntil), r.deliveredBy(r.newEmittersFrom, r.forever))
}

// upgradeStep is what happens between the halves of chunk c (see
// rollingUpgrade's table).
func (r *rolling) upgradeStep(c int) {
	t, oldRel, newRel := r.t, r.oldRel, r.newRel
	switch c {
	case 1:
		waitFor(t, "the old mapper to write pending events and the old emitters to deliver", func() bool {
			return r.tally.count("pending", "v1") > 0 && len(r.sink.Accepted()) > 0
		}, r.state)
		r.mapper.restartAs(t, newRel)
		r.feed(1)
		r.step(fmt.Sprintf("SIGKILL mapper, back as %s (mapper %s + emitters %s); identities of group 1", newRel, newRel, oldRel))
	case 3:
		waitFor(t, "emitters of the old release to deliver version 2 records", func() bool {
			return r.deliveredBy(r.began, r.forever)["v2"] > 0 && r.tally.count("pending", "v2") > 0
		}, r.state)
		r.oldEmittersUntil = time.Now()
		r.e1.restartAs(t, newRel)
		r.step(fmt.Sprintf("SIGKILL emitter e1, back as %s (emitters %s + %s side by side)", newRel, newRel, oldRel))
	case 4:
		waitFor(t, "the new materializer to release pending events the old mapper wrote", func() bool {
			return r.tally.released()["v1->v2"] > 0
		}, r.state)
		r.step("the new materializer released pending events the old mapper wrote")
		r.mapper.restartAs(t, oldRel)
		r.feed(2)
		r.mark = r.written("v1")
		r.step(fmt.Sprintf("SIGKILL mapper, back as %s (mapper %s + emitters %s and %s); identities of group 2", oldRel, oldRel, newRel, oldRel))
	case 5:
		waitFor(t, "the old mapper, back, to write", func() bool { return r.written("v1") > r.mark }, r.state)
		r.e2.restartAs(t, newRel)
		// The killed emitter is gone; a request it had sent may still
		// be answered for a moment. What follows is the new ones'.
		time.Sleep(300 * time.Millisecond)
		r.newEmittersFrom = time.Now()
		r.step(fmt.Sprintf("SIGKILL emitter e2, back as %s (mapper %s + emitters %s)", newRel, oldRel, newRel))
	case 6:
		waitFor(t, "emitters of the new release to deliver version 1 records", func() bool {
			return r.deliveredBy(r.newEmittersFrom, r.forever)["v1"] > 0
		}, r.state)
		waitFor(t, "the old materializer to release pending events the new mapper wrote", func() bool {
			return r.tally.released()["v2->v1"] > 0
		}, r.state)
		r.step("the old materializer released pending events the new mapper wrote")
		r.mapper.restartAs(t, newRel)
		r.feed(3)
		r.step(fmt.Sprintf("SIGKILL mapper, back as %s (all %s); identities of group 3", newRel, newRel))
	}
}

func (r *rolling) procs() []*proc { return []*proc{r.mapper, r.e1, r.e2} }

// dead is every dead letter of both dead-letter topics.
func (r *rolling) dead() []exactlyonce.DeadLetter {
	return append(r.deadEvents.all(), r.deadRaw.all()...)
}

// waiting counts the events in the Redis pending index; -1: Redis did
// not answer.
func (r *rolling) waiting() (n int64) {
	for _, app := range r.ad.customApps() {
		c, err := r.index.Count(context.Background(), app)
		if err != nil {
			r.t.Logf("pending index: %v", err)
			return -1
		}
		n += c
	}
	return n
}

// settle waits up to two minutes for every event to be delivered and
// nothing left pending, stops the processes, and checks.
func (r *rolling) settle() (exactlyonce.Report, time.Duration) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rep := exactlyonce.Check(r.expected, delivered(r.sink.Sink), r.dead())
		if (len(rep.Missing) == 0 && r.tally.live() == 0 && r.waiting() == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(r.began)
	time.Sleep(time.Second) // a late double would show now
	r.cancel()
	var stopping sync.WaitGroup
	for _, p := range r.procs() {
		stopping.Go(p.stopAndWait)
	}
	stopping.Wait()
	return exactlyonce.Check(r.expected, delivered(r.sink.Sink), r.dead()), elapsed
}

// compare counts the events Heap kept unlike their mapping, the first
// difference, and the events compared by the version they were written as.
func (r *rolling) compare() (differ int, first string, compared map[string]int) {
	compared = map[string]int{}
	for _, a := range r.sink.Accepted() {
		e, ok := r.expected[a.IdempotencyKey]
		if !ok {
			continue // Check reports it
		}
		if e.Identity == "" {
			e.Identity = r.ad.identityOf(e)
		}
		want := heaptest.EventOf(emitter.HeapEvent(e))
		got := a.Event
		if d := cmp.Diff(
			[]any{want.Identity, want.Event, want.Timestamp, want.Properties},
			[]any{got.Identity, got.Event, got.Timestamp, got.Properties}); d != "" {
			if differ == 0 {
				first = fmt.Sprintf("event %s (heap.events written as %s):\n%s", a.IdempotencyKey, r.tally.eventWriter(a.IdempotencyKey), d)
			}
			differ++
		}
		compared[r.tally.eventWriter(a.IdempotencyKey)]++
	}
	return differ, first, compared
}

// startsByRelease counts each process's starts as each release.
func (r *rolling) startsByRelease() map[string]int {
	starts := map[string]int{}
	for _, p := range r.procs() {
		for _, rel := range []string{"v1", "A", "B"} {
			if n := p.count("release " + rel + ":"); n != 0 {
				starts[p.name()+" as "+rel] += n
			}
		}
	}
	return starts
}

// report writes the run's summary.
func (r *rolling) report(rep exactlyonce.Report, elapsed time.Duration) {
	differ, _, compared := r.compare()
	st := r.sink.Stats()
	writeReport(r.t, map[string]any{
		"test": r.t.Name(), "kafka": kafkatest.Name(), "registry": r.withRegistry, "releases": r.oldRel + "->" + r.newRel,
		"inputs": len(r.in), "expected": rep.Expected, "delivered": rep.Delivered, "dead_lettered": rep.DeadLettered,
		"heap_requests": st.Requests, "resent_then_deduplicated_by_heap": st.Duplicates,
		"heap_events_records_by_version":  r.tally.counts("events"),
		"pending_records_by_version":      r.tally.counts("pending"),
		"records_by_framing":              r.tally.framing(),
		"released_pending_to_events":      r.tally.released(),
		"delivered_by_old_emitters_only":  r.deliveredBy(r.began, r.oldEmittersUntil),
		"delivered_by_new_emitters_only":  r.deliveredBy(r.newEmittersFrom, r.forever),
		"mapper_kills":                    r.mapper.kills,
		"emitter_kills":                   r.e1.kills + r.e2.kills,
		"starts_by_release":               r.startsByRelease(),
		"pending_left_topic":              r.tally.live(),
		"pending_left_redis":              r.waiting(),
		"heap_properties_differing":       differ,
		"heap_events_compared_by_version": compared,
		"steps":                           r.steps,
		"seconds":                         elapsed.Round(100 * time.Millisecond).Seconds(),
		"ok":                              rep.OK(),
	})
}

// check fails the test on what the run must show.
func (r *rolling) check(rep exactlyonce.Report) {
	t := r.t
	if !rep.OK() {
		t.Fatalf("exactly-once violated: %s", rep)
	}
	if rep.DeadLettered != 0 || len(r.deadEvents.all()) != 0 || len(r.deadRaw.all()) != 0 {
		t.Errorf("dead letters: %d in heap.events.dlq %v, %d in mailchimp.dlq", len(r.deadEvents.all()), r.deadEvents.all(), len(r.deadRaw.all()))
	}
	if n := r.tally.live(); n != 0 {
		t.Errorf("%d events still in heap.events.pending: dropped", n)
	}
	if n := r.waiting(); n != 0 {
		t.Errorf("%d events still in the pending index", n)
	}
	if differ, first, compared := r.compare(); differ != 0 || compared["v1"] == 0 || compared["v2"] == 0 {
		t.Errorf("%d events reached Heap unlike their mapping (of %v compared, by version); first: %s", differ, compared, first)
	}
	r.checkHandovers()
	if st := r.sink.Stats(); st.Throttled != 0 {
		t.Errorf("the stand-in refused %d requests for going over Heap's limits", st.Throttled)
	}
	if r.mapper.kills != 3 || r.e1.kills != 1 || r.e2.kills != 1 {
		t.Errorf("kills: mapper %d, e1 %d, e2 %d; want 3, 1, 1", r.mapper.kills, r.e1.kills, r.e2.kills)
	}
	for _, p := range r.procs() {
		if p.hung != 0 {
			t.Errorf("%s did not exit within 30 s of SIGTERM", p.name())
		}
	}
}

// checkHandovers: both versions were written to both topics, in the
// run's framing, and the upgrade's handovers happened: each release's
// materializer released pending events the other wrote, and each
// release's emitters alone delivered records of the other's version.
func (r *rolling) checkHandovers() {
	t := r.t
	for topic, name := range map[string]string{"events": r.topics.Events, "pending": r.topics.Pending} {
		for _, v := range []string{"v1", "v2"} {
			if r.tally.count(topic, v) == 0 {
				t.Errorf("no record of %s was written as %s", name, v)
			}
		}
	}
	framing := "single-object"
	if r.withRegistry {
		framing = "confluent"
	}
	if f := r.tally.framing(); len(f) != 1 || f[framing] == 0 {
		t.Errorf("records by framing %v, want %s only", f, framing)
	}
	released := r.tally.released()
	for _, pair := range []string{"v1->v2", "v2->v1"} {
		if released[pair] == 0 {
			t.Errorf("no pending event written as %s was released as %s", pair[:2], pair[4:])
		}
	}
	byOld, byNew := r.deliveredBy(r.began, r.oldEmittersUntil), r.deliveredBy(r.newEmittersFrom, r.forever)
	if byOld["v2"] == 0 || byNew["v1"] == 0 {
		t.Errorf("the old emitters alone delivered %v, the new alone %v: want version 2 and version 1 records among them", byOld, byNew)
	}
}

// restartAs SIGKILLs the running process and has the next one run
// release; it returns once the next one has started, so the killed one is
// gone.
func (p *proc) restartAs(t *testing.T, release string) {
	t.Helper()
	p.mu.Lock()
	p.env = append(slices.DeleteFunc(slices.Clone(p.env), func(e string) bool { return strings.HasPrefix(e, "EO_RELEASE=") }),
		"EO_RELEASE="+release)
	before := p.starts
	p.mu.Unlock()
	p.kill()
	waitFor(t, p.name()+" to restart", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.starts > before
	}, func() string { return "it did not" })
}

// waitFor waits until cond holds; state says what was seen instead.
func waitFor(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s; %s", what, state())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addressBook is the four sources and their addresses: 250 a source,
// user<k>@example.com; s2 and s3 join on the custom property "email", and
// address k's identity there, uid-<source>-<k>, arrives with group k%4.
type addressBook struct {
	sourcesFile string
	sources     *source.Sources
	apps        map[string]string // source -> app
	ids         map[string]string // app, email key -> identity
}

const addresses = 250

func newAddressBook(t *testing.T, prefix string) *addressBook {
	t.Helper()
	ad := &addressBook{apps: map[string]string{}, ids: map[string]string{}}
	var list []source.Source
	var yaml strings.Builder
	yaml.WriteString("sources:\n")
	for i := range 4 {
		s := source.Source{ID: fmt.Sprintf("s%d", i), HeapAppID: fmt.Sprintf("%sapp%d", prefix, i)}
		if i >= 2 {
			s.EmailProperty = "email"
		}
		list = append(list, s)
		ad.apps[s.ID] = s.HeapAppID
		fmt.Fprintf(&yaml, "  - {id: %s, heap_app_id: %q", s.ID, s.HeapAppID)
		if s.EmailProperty != "" {
			fmt.Fprintf(&yaml, ", email_property: %s", s.EmailProperty)
			for k := range addresses {
				ad.ids[s.HeapAppID+"\x00"+events.EmailKey(email(k))] = fmt.Sprintf("uid-%s-%d", s.ID, k)
			}
		}
		yaml.WriteString("}\n")
	}
	ad.sourcesFile = filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(ad.sourcesFile, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if ad.sources, err = source.New(list...); err != nil {
		t.Fatal(err)
	}
	return ad
}

func email(k int) string { return fmt.Sprintf("user%d@example.com", k) }

func (ad *addressBook) customApps() []string { return []string{ad.apps["s2"], ad.apps["s3"]} }

// identityOf is the identity Heap must see for an event of a source that
// joins on the custom property.
func (ad *addressBook) identityOf(e events.Event) string { return ad.ids[e.AppID+"\x00"+e.EmailKey] }

// identities are the heap.identities records of group g, as the identity
// feed writes them.
func (ad *addressBook) identities(topics kafka.Topics, g int) []*kgo.Record {
	var out []*kgo.Record
	for _, src := range []string{"s2", "s3"} {
		for k := g; k < addresses; k += 4 {
			r, err := identity.Bind(src, ad.apps[src], email(k), fmt.Sprintf("uid-%s-%d", src, k), time.Now()).Record(topics.Identities)
			if err != nil {
				panic(err)
			}
			out = append(out, r)
		}
	}
	return out
}

// upgradeInput is a Mandrill open or click of one address.
type upgradeInput struct {
	exactlyonce.Input
	email string
}

// record is the mailchimp.raw record ingress would write: keyed by source
// and address, so an address's events stay in order and sources spread.
func (i upgradeInput) record(topic string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(i.Source + "/" + i.email), Value: i.Raw, Headers: []kgo.RecordHeader{
		{Key: kafka.HeaderSource, Value: []byte(i.Source)},
		{Key: kafka.HeaderKind, Value: []byte(i.Kind)},
		{Key: kafka.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	}}
}

// inputs are n Mandrill events over the four sources: event i is of source
// i%4 and address (i/4)%250, so each address has one event every 1000.
func (ad *addressBook) inputs(n int) []upgradeInput {
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	var out []upgradeInput
	for i := range n {
		src, addr := fmt.Sprintf("s%d", i%4), email((i/4)%addresses)
		at := base.Add(time.Duration(i) * time.Second)
		ev, url := "open", ""
		if i%3 == 0 {
			ev, url = "click", fmt.Sprintf(`,"url":"https://shop.example/p/%d"`, i)
		}
		raw := fmt.Sprintf(`{"event":%q,"ts":%d,"_id":"msg-%d","ip":"192.0.2.%d"%s,"msg":{"_id":"msg-%d","ts":%d,"email":%q,"subject":"Order %d","tags":["t%d"]}}`,
			ev, at.Unix(), i, i%250, url, i, base.Unix(), addr, i, i%5)
		out = append(out, upgradeInput{Input: exactlyonce.Input{Source: src, Kind: mailchimp.KindMandrillEvent, Raw: []byte(raw)}, email: addr})
	}
	return out
}

func inputsOf(in []upgradeInput) []exactlyonce.Input {
	out := make([]exactlyonce.Input, len(in))
	for i, x := range in {
		out[i] = x.Input
	}
	return out
}
