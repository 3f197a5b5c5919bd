package materializer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/route"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/materializer"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// rig is one test's Kafka topics, Redis and a producer to feed them.
type rig struct {
	t       *testing.T
	brokers []string
	topics  kafka.Topics
	app     string
	codec   *events.Codec
	srcs    *source.Sources
	rdb     redis.UniversalClient
	faults  *faults
	status  *status.Store
	prod    *kgo.Client
	t0      time.Time
}

// newRig: source "acme" waits an hour for identities, "slow" a day; both
// send to the same app.
func newRig(t *testing.T) *rig {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	app := kafkatest.Prefix(t) + "app"
	srcs, err := source.New(
		source.Source{ID: "acme", HeapAppID: app, EmailProperty: "email", PendingMaxAge: time.Hour},
		source.Source{ID: "slow", HeapAppID: app, EmailProperty: "email", PendingMaxAge: 24 * time.Hour},
	)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	rdb := redistest.PrivateClient(t)
	f := &faults{}
	rdb.AddHook(f)
	return &rig{t: t, brokers: brokers, topics: kafkatest.Topics(t, brokers, 2), app: app, codec: codec, srcs: srcs,
		rdb: rdb, faults: f, status: status.NewStore(rdb), prod: cl,
		t0: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
}

// config runs the materializer at now; nil is r.t0, when the test's events
// were received (so a sweep expires none).
func (r *rig) config(now func() time.Time) materializer.Config {
	if now == nil {
		now = func() time.Time { return r.t0 }
	}
	return materializer.Config{
		Brokers: r.brokers, Topics: r.topics, Group: kafkatest.Prefix(r.t) + "mat",
		TransactionID: kafkatest.Prefix(r.t) + "mat", Holder: "t",
		Sources: r.srcs, Codec: r.codec, Redis: r.rdb, Status: r.status, Log: zaptest.NewLogger(r.t),
		SweepInterval: time.Hour, CheckInterval: 20 * time.Millisecond, Now: now,
	}
}

// run starts the materializer; the returned stop (also a cleanup) cancels it
// and waits for Run to return.
func (r *rig) run(cfg materializer.Config) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- materializer.Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("Run: %v", err)
			}
		})
	}
	r.t.Cleanup(stop)
	r.waitFor("the cache marker", func() bool {
		ok, err := materializer.CacheReady(r.rdb, r.topics)(context.Background())
		return err == nil && ok
	})
	return stop
}

func (r *rig) event(source, email, id string) events.Event {
	return events.Event{ID: id, SourceID: source, AppID: r.app, EmailKey: events.EmailKey(email), Name: events.NameOpen,
		Time: r.t0.Add(-time.Minute), CampaignID: "c1", Lineage: events.Lineage{ReceivedAt: r.t0}}
}

func (r *rig) pendingRecord(e events.Event, hdrs ...kgo.RecordHeader) *kgo.Record {
	r.t.Helper()
	rec := route.Record(r.topics, r.codec, e)
	if rec.Topic != r.topics.Pending {
		r.t.Fatalf("event %s goes to %s, not pending", e.ID, rec.Topic)
	}
	rec.Headers = append(rec.Headers, hdrs...)
	return rec
}

func (r *rig) bind(email, ident string) *kgo.Record {
	r.t.Helper()
	rec, err := identity.Bind("acme", r.app, email, ident, r.t0).Record(r.topics.Identities)
	if err != nil {
		r.t.Fatal(err)
	}
	return rec
}

func (r *rig) alias(oldEmail, newEmail string) *kgo.Record {
	r.t.Helper()
	rec, err := identity.Alias("acme", r.app, oldEmail, newEmail, r.t0).Record(r.topics.Identities)
	if err != nil {
		r.t.Fatal(err)
	}
	return rec
}

func (r *rig) produce(recs ...*kgo.Record) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	testsupport.WaitFor(r.t, what, 20*time.Second, cond)
}

func (r *rig) report(source string) status.Report {
	r.t.Helper()
	rep, err := r.status.Report(context.Background(), source)
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func (r *rig) waitPending(source string, want int64) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%s pending count %d", source, want), func() bool { return r.report(source).Pending == want })
}

// addresses is how many addresses of the app have waiting events.
func (r *rig) addresses() int64 {
	n, err := pending.New(r.rdb).Count(context.Background(), r.app)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// released reads want events of heap.events (and any beyond) as event id ->
// identity, failing on a duplicate.
func (r *rig) released(want int) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for _, rec := range kafkatest.Consume(r.t, r.brokers, r.topics.Events, want, 20*time.Second) {
		e, err := r.codec.Decode(rec.Value)
		if err != nil {
			r.t.Fatal(err)
		}
		if _, dup := out[e.ID]; dup {
			r.t.Errorf("event %s released twice", e.ID)
		}
		if string(rec.Key) != string(e.Key()) {
			r.t.Errorf("event %s keyed %q, want %q", e.ID, rec.Key, e.Key())
		}
		out[e.ID] = e.Identity
	}
	return out
}

// tombstones returns the pending keys tombstoned so far, sorted.
func (r *rig) tombstones(want int) []string {
	r.t.Helper()
	var out []string
	for _, rec := range kafkatest.Consume(r.t, r.brokers, r.topics.Pending, want, 20*time.Second) {
		if rec.Value == nil {
			out = append(out, string(rec.Key))
		}
	}
	sort.Strings(out)
	return out
}

// faults makes chosen Redis commands fail: fail(n, match) fails the next n
// commands match accepts.
type faults struct {
	mu     sync.Mutex
	n      int
	match  func([]any) bool
	failed int
}

var errInjected = errors.New("injected Redis failure")

func (f *faults) fail(n int, match func([]any) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.match = n, match
}

func (f *faults) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *faults) hit(cmd redis.Cmder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 || !f.match(cmd.Args()) {
		return false
	}
	f.n--
	f.failed++
	return true
}

func (f *faults) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (f *faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.hit(cmd) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}

func (f *faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Script calls on the pending index, told apart by their arguments:
// EVALSHA sha 2 hash set ARGV... Add's ARGV are id, ms, value, email key;
// Remove's are email key, ids...
func indexAdd(args []any) bool {
	return len(args) == 9 && strings.EqualFold(fmt.Sprint(args[0]), "evalsha") &&
		strings.HasPrefix(fmt.Sprint(args[3]), "mh:pending:") && strings.HasSuffix(fmt.Sprint(args[3]), ":"+fmt.Sprint(args[8]))
}

func indexRemove(args []any) bool {
	return len(args) >= 7 && strings.EqualFold(fmt.Sprint(args[0]), "evalsha") &&
		strings.HasPrefix(fmt.Sprint(args[3]), "mh:pending:") && strings.HasSuffix(fmt.Sprint(args[3]), ":"+fmt.Sprint(args[5]))
}

// TestReleaseOnIdentityArrival: an event waits (pending count 1) until its
// address's identity arrives, then goes to heap.events with that identity,
// is tombstoned in pending and the count is back to 0; an identity known
// before the event releases it at once.
func TestReleaseOnIdentityArrival(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	tests := []struct {
		name          string
		identityFirst bool
	}{
		{"identity after the event", false},
		{"identity before the event", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.run(r.config(nil))
			e := r.event("acme", "Alice@Example.com", "e1")
			if tt.identityFirst {
				r.produce(r.bind("alice@example.com", "User-A"))
				r.waitFor("the identity in Redis", func() bool {
					got, _ := identity.NewStore(r.rdb).Resolve(context.Background(), r.app, []string{e.EmailKey})
					return got[e.EmailKey] == "User-A"
				})
				r.produce(r.pendingRecord(e))
			} else {
				r.produce(r.pendingRecord(e))
				r.waitPending("acme", 1)
				if n := r.addresses(); n != 1 {
					t.Fatalf("%d addresses waiting, want 1", n)
				}
				r.produce(r.bind(" ALICE@example.com", "User-A"))
			}
			if got := r.released(1); got["e1"] != "User-A" || len(got) != 1 {
				t.Fatalf("released %v, want e1 as User-A", got)
			}
			r.waitPending("acme", 0)
			if ts := r.tombstones(2); len(ts) != 1 || ts[0] != string(e.PendingKey()) {
				t.Errorf("tombstones %q, want the event's pending key", ts)
			}
			r.waitFor("the index to empty", func() bool { return r.addresses() == 0 })
		})
	}
}

// TestAliasLateBinding: an address that changed inherits the old address's
// identity when that arrives after the alias, through two hops as well.
func TestAliasLateBinding(t *testing.T) {
	tests := []struct {
		name    string
		records func(r *rig) []*kgo.Record // in order, before the events
		last    func(r *rig) *kgo.Record   // after the events are waiting
		waiting []string                   // addresses with an event each
		ident   string
	}{
		{
			name:    "old identity arrives later",
			records: func(r *rig) []*kgo.Record { return []*kgo.Record{r.alias("old@example.com", "new@example.com")} },
			last:    func(r *rig) *kgo.Record { return r.bind("old@example.com", "User-O") },
			waiting: []string{"new@example.com", "old@example.com"},
			ident:   "User-O",
		},
		{
			name: "two hops, newest alias first",
			records: func(r *rig) []*kgo.Record {
				return []*kgo.Record{r.alias("b@example.com", "c@example.com"), r.alias("a@example.com", "b@example.com")}
			},
			last:    func(r *rig) *kgo.Record { return r.bind("a@example.com", "User-A") },
			waiting: []string{"c@example.com", "b@example.com"},
			ident:   "User-A",
		},
		{
			name: "two hops, middle alias last",
			records: func(r *rig) []*kgo.Record {
				return []*kgo.Record{r.bind("a@example.com", "User-A"), r.alias("b@example.com", "c@example.com")}
			},
			last:    func(r *rig) *kgo.Record { return r.alias("a@example.com", "b@example.com") },
			waiting: []string{"c@example.com", "b@example.com"},
			ident:   "User-A",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.run(r.config(nil))
			r.produce(tt.records(r)...)
			var recs []*kgo.Record
			for i, email := range tt.waiting {
				recs = append(recs, r.pendingRecord(r.event("acme", email, fmt.Sprintf("e%d", i))))
			}
			r.produce(recs...)
			r.waitPending("acme", int64(len(tt.waiting)))
			r.produce(tt.last(r))
			got := r.released(len(tt.waiting))
			if len(got) != len(tt.waiting) {
				t.Fatalf("released %v, want %d events", got, len(tt.waiting))
			}
			for id, ident := range got {
				if ident != tt.ident {
					t.Errorf("event %s released as %q, want %q", id, ident, tt.ident)
				}
			}
			r.waitPending("acme", 0)
			r.waitFor("the index to empty", func() bool { return r.addresses() == 0 })
		})
	}
}

// TestExpiry: the sweep dead-letters an event once it waited longer than
// its own source's pending_max_age, counted from its receipt or from a
// pending-since header (a redrive); the others keep waiting.
func TestExpiry(t *testing.T) {
	r := newRig(t)
	now := r.t0.Add(2 * time.Hour)
	tests := []struct {
		id, source string
		since      string // pending-since header
		expired    bool
	}{
		{id: "acme-old", source: "acme", expired: true},                                                   // 2 h > 1 h
		{id: "acme-redriven", source: "acme", since: now.Add(-30 * time.Minute).Format(time.RFC3339Nano)}, // 30 min
		{id: "acme-redriven-old", source: "acme", since: now.Add(-61 * time.Minute).Format(time.RFC3339Nano), expired: true},
		{id: "slow-old", source: "slow"}, // 2 h < 24 h
	}
	var recs []*kgo.Record
	var wantDead, wantTomb []string
	for i, tt := range tests {
		e := r.event(tt.source, fmt.Sprintf("u%d@example.com", i), tt.id)
		var hdrs []kgo.RecordHeader
		if tt.since != "" {
			hdrs = append(hdrs, kgo.RecordHeader{Key: materializer.HeaderPendingSince, Value: []byte(tt.since)})
		}
		recs = append(recs, r.pendingRecord(e, hdrs...))
		if tt.expired {
			wantDead = append(wantDead, tt.id)
			wantTomb = append(wantTomb, string(e.PendingKey()))
		}
	}
	r.produce(recs...)

	m, err := materializer.New(r.config(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if err := m.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if p := r.report("acme").Pending + r.report("slow").Pending; p != int64(len(tests)) {
		t.Fatalf("pending after rebuild %d, want %d", p, len(tests))
	}
	if err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}

	var gotDead []string
	for _, rec := range kafkatest.Consume(t, r.brokers, r.topics.EventsDLQ, len(wantDead), 20*time.Second) {
		gotDead = append(gotDead, kafka.Header(rec, kafka.HeaderEventID))
		if reason := kafka.Header(rec, kafka.HeaderReason); !strings.HasPrefix(reason, "unmatched: ") || !strings.Contains(reason, "1h0m0s") {
			t.Errorf("reason %q", reason)
		}
		if origin := kafka.Header(rec, kafka.HeaderOrigin); origin != r.topics.Pending {
			t.Errorf("origin %q, want %s", origin, r.topics.Pending)
		}
		if e, err := r.codec.Decode(rec.Value); err != nil || e.Identity != "" {
			t.Errorf("dead letter value: %+v, %v", e, err)
		}
	}
	sort.Strings(gotDead)
	sort.Strings(wantDead)
	if fmt.Sprint(gotDead) != fmt.Sprint(wantDead) {
		t.Errorf("dead-lettered %v, want %v", gotDead, wantDead)
	}
	sort.Strings(wantTomb)
	if got := r.tombstones(len(tests) + len(wantTomb)); fmt.Sprint(got) != fmt.Sprint(wantTomb) {
		t.Errorf("tombstones %q, want %q", got, wantTomb)
	}
	acme, slow := r.report("acme"), r.report("slow")
	if acme.Pending != 1 || slow.Pending != 1 || acme.DeadLettered[status.ReasonUnmatched] != 2 || len(slow.DeadLettered) != 0 {
		t.Errorf("status: acme pending %d dead %v; slow pending %d dead %v; want 1 {unmatched:2}, 1 {}",
			acme.Pending, acme.DeadLettered, slow.Pending, slow.DeadLettered)
	}
	// A second sweep finds nothing more to do.
	if err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if r.report("acme").DeadLettered[status.ReasonUnmatched] != 2 || r.addresses() != 2 {
		t.Errorf("second sweep changed something: %+v, %d addresses", r.report("acme"), r.addresses())
	}
}

// TestRetriedBatchCountsOnce: Redis fails in the middle of a batch, after
// some events were indexed; the retried batch counts each event once, and
// their release brings the count back to exactly 0.
func TestRetriedBatchCountsOnce(t *testing.T) {
	r := newRig(t)
	r.run(r.config(nil))
	r.faults.fail(1, func(args []any) bool { return indexAdd(args) && fmt.Sprint(args[5]) == "e2" })
	var recs []*kgo.Record
	for i := range 3 {
		recs = append(recs, r.pendingRecord(r.event("acme", fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("e%d", i))))
	}
	r.produce(recs...)
	r.waitFor("the injected failure", func() bool { return r.faults.count() == 1 })
	r.waitFor("3 waiting addresses", func() bool { return r.addresses() == 3 })
	r.produce(r.bind("u0@example.com", "id-0"), r.bind("u1@example.com", "id-1"), r.bind("u2@example.com", "id-2"))
	if got := r.released(3); len(got) != 3 {
		t.Fatalf("released %v", got)
	}
	r.waitFor("the index to empty", func() bool { return r.addresses() == 0 })
	// Counted once each: a double count would leave the count above 0.
	r.waitPending("acme", 0)
}

// TestRemoveFailsAfterRelease: the release committed, then Redis failed to
// drop the entries from the index. The event must not be released again
// (by the retried batch or a sweep) and the count ends at 0.
func TestRemoveFailsAfterRelease(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	r := newRig(t)
	cfg := r.config(nil)
	r.run(cfg)
	r.produce(r.pendingRecord(r.event("acme", "u@example.com", "e1")))
	r.waitPending("acme", 1)
	r.faults.fail(2, indexRemove)
	r.produce(r.bind("u@example.com", "User-U"))
	r.waitFor("the injected failures", func() bool { return r.faults.count() == 2 })
	r.waitFor("the index to empty", func() bool { return r.addresses() == 0 })
	r.waitPending("acme", 0)
	// The tombstone is consumed by now or soon; a sweep meanwhile must not
	// release again either.
	m, err := materializer.New(func() materializer.Config { c := cfg; c.TransactionID += "-sweep"; return c }())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.released(1); len(got) != 1 || got["e1"] != "User-U" {
		t.Fatalf("released %v, want e1 once as User-U", got)
	}
	if ts := r.tombstones(2); len(ts) != 1 {
		t.Errorf("%d tombstones, want 1", len(ts))
	}
}

// TestFailedBatchNotCommitted: a batch that could not be applied (Redis
// failing) when the materializer stops is not committed, so the next one
// applies it.
func TestFailedBatchNotCommitted(t *testing.T) {
	r := newRig(t)
	cfg := r.config(nil)
	stop := r.run(cfg)
	r.faults.fail(1<<30, indexAdd)
	r.produce(r.pendingRecord(r.event("acme", "u@example.com", "e1")))
	r.waitFor("an injected failure", func() bool { return r.faults.count() > 0 })
	stop()
	r.faults.fail(0, nil)
	r.run(cfg)
	r.waitPending("acme", 1)
	if n := r.addresses(); n != 1 {
		t.Fatalf("%d addresses waiting, want 1", n)
	}
}

// TestRebuildKeepsNewerIdentity: a rebuild beside the live consumer (after a
// flush) writes what it read a moment ago; a mapping the consumer applied
// meanwhile is newer and stays, while missing ones are filled in.
func TestRebuildKeepsNewerIdentity(t *testing.T) {
	r := newRig(t)
	r.produce(r.bind("x@example.com", "id-old"), r.bind("y@example.com", "id-y"))
	ctx := context.Background()
	ids := identity.NewStore(r.rdb)
	x, y := events.EmailKey("x@example.com"), events.EmailKey("y@example.com")
	if err := ids.Put(ctx, r.app, x, "id-new"); err != nil {
		t.Fatal(err)
	}
	m, err := materializer.New(r.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := ids.Resolve(ctx, r.app, []string{x, y})
	if err != nil || got[x] != "id-new" || got[y] != "id-y" {
		t.Fatalf("after rebuild %v, %v; want x id-new (kept), y id-y", got, err)
	}
}
