package emitter_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestEmitterPacesUnderHeapLimits: with the stand-in enforcing per-app and
// per-identity limits (on a one-second window, so the test is short), a
// backlog is delivered whole without a single 429.
func TestEmitterPacesUnderHeapLimits(t *testing.T) {
	testsupport.Integration(t, "emitter on kfake against a rate-limited Heap stand-in, real pacing windows")
	const window = time.Second
	h := newHarness(t, heaptest.WithLimits(heaptest.Limits{PerApp: 500, PerIdentity: 150, Window: window}))
	var err error
	if h.sources, err = source.New(source.Source{ID: "acme", HeapAppID: h.prefix + "app",
		AppEventsPerMinute: 500, IdentityEventsPerMinute: 150}); err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for i := range 1500 {
		evs = append(evs, h.event(i, "acme"))
	}
	h.produce(t, evs...)
	rdb := redistest.Client(t)
	apps := pacing.NewApps(rdb)
	apps.Period = window
	stop := h.run(t, 5*time.Second, func(c *emitter.Config) {
		c.Pacer, c.PacePeriod = apps, window
		c.Ledger = ledger.NewStore(rdb, time.Hour)
	})
	defer stop()
	testsupport.WaitFor(t, "1500 events", waitWithin, func() bool { return len(h.sink.Accepted()) == 1500 })
	if st := h.sink.Stats(); st.Throttled != 0 || st.Rejected != 0 {
		t.Fatalf("stand-in answered 429 %d times (stats %+v)", st.Throttled, st)
	}
}

// acmeDown is a harness, on topics of the given partitions, whose Heap
// stand-in answers 503 to acme's app while down is set (it starts set).
func acmeDown(t *testing.T, partitions int32) (*harness, *atomic.Bool) {
	down := new(atomic.Bool)
	down.Store(true)
	var h *harness
	h = newHarnessOf(t, partitions, heaptest.FaultFunc(func(req heaptest.Request) *heaptest.Fault {
		if down.Load() && req.AppID == h.prefix+"app" {
			return &heaptest.Fault{Status: 503}
		}
		return nil
	}))
	return h, down
}

// TestEmitterOtherAppsFlow: while one app's Heap requests fail, its backlog
// stays bounded (its partitions pause) and another app's events, on other
// partitions, flow.
func TestEmitterOtherAppsFlow(t *testing.T) {
	testsupport.Integration(t, "emitter on kfake against a rate-limited Heap stand-in, real pacing windows")
	h, down := acmeDown(t, 3)
	var acme, beta []events.Event
	for i := range 3000 {
		acme = append(acme, h.event(i, "acme"))
		if i%10 == 0 {
			beta = append(beta, h.event(i, "beta"))
		}
	}
	h.produceTo(t, 0, acme[:1500]...)
	h.produceTo(t, 1, acme[1500:]...)
	h.produceTo(t, 2, beta...)
	var maxQueued, paused atomic.Int64
	stop := h.run(t, time.Second, func(c *emitter.Config) {
		c.MaxQueued, c.MaxPoll = 200, 100
		c.Observe = func(s emitter.Stats) {
			if int64(s.Queued) > maxQueued.Load() {
				maxQueued.Store(int64(s.Queued))
			}
			if s.PausedPartitions > 0 {
				paused.Store(1)
			}
		}
	})
	defer stop()
	testsupport.WaitFor(t, "beta's 300 events while acme is down", waitWithin, func() bool {
		return len(h.sink.Accepted()) == 300
	})
	for _, a := range h.sink.Accepted() {
		if a.AppID != h.prefix+"beta" {
			t.Fatalf("acme delivered while down: %+v", a)
		}
	}
	if paused.Load() == 0 {
		t.Error("no partition paused while acme's backlog was full")
	}
	// The bound: MaxQueued plus at most one poll (and one in-flight batch).
	if q := maxQueued.Load(); q > 200+100+1000 {
		t.Errorf("queued up to %d events", q)
	}
	down.Store(false)
	testsupport.WaitFor(t, "all 3300 events after acme recovers", waitWithin, func() bool {
		return len(h.sink.Accepted()) == 3300
	})
}

// TestEmitterResumesWhenDrained: an app whose queue filled (its partition
// paused) resumes fetching as soon as its worker drained it to half, not
// when the poll loop next wakes: with polls that wait ten minutes, the whole
// backlog still arrives.
func TestEmitterResumesWhenDrained(t *testing.T) {
	testsupport.Integration(t, "emitter on kfake waiting out real pacing windows")
	h := newHarness(t)
	var evs []events.Event
	for i := range 1200 {
		evs = append(evs, h.event(i, "acme"))
	}
	h.produceTo(t, 0, evs...)
	var paused atomic.Int64
	stop := h.run(t, 5*time.Second, func(c *emitter.Config) {
		c.MaxQueued, c.MaxPoll, c.MaxBatch, c.PollWait = 200, 100, 100, 10*time.Minute
		c.Observe = func(s emitter.Stats) {
			if s.PausedPartitions > 0 {
				paused.Add(1)
			}
		}
	})
	defer stop()
	// A resumed partition joins the next fetch, after the one long-polling
	// the empty partitions (FetchMaxWait, 1 s): some seconds in all.
	testsupport.WaitFor(t, "1200 events", waitWithin, func() bool { return len(h.sink.Accepted()) == 1200 })
	if paused.Load() == 0 {
		t.Error("the partition never paused: the test did not exercise a resume")
	}
}

// TestEmitterResumesReassignedPartitions: partitions paused by flow control
// (Heap down for the app) that are revoked while paused, for a member that
// joins and leaves, and then assigned back, are fetched again: kgo keeps a
// partition paused across a revoke, so the emitter resumes what it drops.
// A fourth partition stays empty: with every partition held the emitter
// would stop polling instead of pausing them.
func TestEmitterResumesReassignedPartitions(t *testing.T) {
	testsupport.Integration(t, "emitter group on kfake through a partition reassignment, real pacing windows")
	h, down := acmeDown(t, 4)
	for p := range int32(3) {
		var evs []events.Event
		for i := range 1000 {
			evs = append(evs, h.event(int(p)*1000+i, "acme"))
		}
		h.produceTo(t, p, evs...)
	}
	observe := func(paused *atomic.Int64) func(c *emitter.Config) {
		return func(c *emitter.Config) {
			c.MaxQueued, c.MaxPoll = 200, 100
			c.Observe = func(s emitter.Stats) { paused.Store(int64(s.PausedPartitions)) }
		}
	}
	var pausedA, pausedB atomic.Int64
	stopA := h.run(t, time.Second, observe(&pausedA))
	defer stopA()
	testsupport.WaitFor(t, "the first member to pause the 3 partitions with events", waitWithin, func() bool {
		return pausedA.Load() == 3
	})
	stopB := h.run(t, time.Second, observe(&pausedB))
	testsupport.WaitFor(t, "the second member to take and pause a partition", waitWithin, func() bool {
		return pausedB.Load() > 0
	})
	stopB() // it leaves: its partitions go back to the first member
	down.Store(false)
	testsupport.WaitFor(t, "all 3000 events", waitWithin, func() bool {
		return len(h.sink.Accepted()) >= 3000
	})
}

// TestEmitterFetchesBacklogOnce: a backlog ten times the queue's bound, on
// partitions that all carried the app before, is fetched once. With every
// partition held the emitter stops polling instead of pausing them all: kgo
// drops a paused partition's buffered records and fetches them again once
// it is resumed. The queue stays bounded all the same.
func TestEmitterFetchesBacklogOnce(t *testing.T) {
	h := newHarness(t)
	produce := func(from, per int) {
		for p := range 3 {
			var evs []events.Event
			for i := range per {
				evs = append(evs, h.event(from+p*per+i, "acme"))
			}
			h.produceTo(t, int32(p), evs...)
		}
	}
	produce(0, 10)
	var read, maxQueued, held atomic.Int64
	stop := h.run(t, 5*time.Second, func(c *emitter.Config) {
		c.MaxQueued, c.MaxPoll, c.MaxBatch = 300, 100, 100
		c.ClientOpts = append(c.ClientOpts, kgo.WithHooks(batchReads{&read}))
		c.Observe = func(s emitter.Stats) {
			maxQueued.Store(max(maxQueued.Load(), int64(s.Queued)))
			if s.PausedPartitions == 3 {
				held.Add(1)
			}
		}
	})
	defer stop()
	// Every partition carried acme: a full queue now holds them all.
	testsupport.WaitFor(t, "the first 30 events", waitWithin, func() bool {
		return len(h.sink.Accepted()) == 30
	})
	produce(30, 1000)
	testsupport.WaitFor(t, "3030 events", waitWithin, func() bool { return len(h.sink.Accepted()) == 3030 })
	if held.Load() == 0 {
		t.Error("the partitions were never held: the test did not exercise flow control")
	}
	if n := read.Load(); n != 3030 {
		t.Errorf("kgo read %d records for 3030", n)
	}
	// The bound: MaxQueued plus at most one poll.
	if q := maxQueued.Load(); q > 300+100 {
		t.Errorf("queued up to %d events", q)
	}
}

// batchReads counts the records kgo decoded from fetched batches.
type batchReads struct{ n *atomic.Int64 }

func (b batchReads) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	b.n.Add(int64(m.NumRecords))
}
