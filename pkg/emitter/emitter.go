// Package emitter delivers heap.events to Heap's Track API in bulk requests,
// paced under Heap's limits.
//
// The contract: every record of heap.events reaches Heap, or the dead-letter
// topic with the reason, and a partition's offset is committed only past a
// contiguous prefix of records that did. A record's way:
//
//   - poll (emitter.go) fetches it, read-committed; accept (accept.go) gives
//     it an entry in its partition's offset order (commit.go) and queues a
//     compact copy of it for its Heap app. A record that does not route is
//     dead-lettered at once.
//   - The app's worker (schedule.go) takes a batch, lingering for a fuller
//     one, finishes what the ledger says Heap already has (ledger.go),
//     encodes the rest (deliver.go), paces it under the app's and its
//     identities' budgets (pace.go) and sends it. An error Heap may get over
//     is retried until ctx ends; a rejected request is split in halves until
//     the events Heap refuses are alone, and those are dead-lettered with
//     Heap's answer.
//   - An entry is done once Heap accepted its event, the ledger had it, or
//     it was dead-lettered. Only each partition's contiguous prefix of done
//     entries is marked for commit: after a crash or a rebalance the next
//     owner sends what followed again, and Heap's idempotency key (the
//     event id) and the ledger, when set, keep Heap from counting an event
//     twice.
//   - A revoked partition (group.go) commits its done prefix and abandons
//     its queued events to its next owner; a lost one only abandons them.
//
// Memory stays bounded (flow.go): an app whose queue is full (its budget is
// spent, or Heap is down) pauses the partitions holding its events, while
// other apps keep flowing; with every partition held, the loop stops polling.
package emitter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
)

// Tracker sends one bulk request.
type Tracker interface {
	TrackEncoded(ctx context.Context, baseURL, appID string, evs [][]byte) error
}

// Pacer takes n events of an app's per-minute budget and says how long to
// wait before sending them: the budget counts them from then.
type Pacer interface {
	Reserve(ctx context.Context, app string, limitPerMin, n int) (time.Duration, error)
}

// Stats is the emitter's state after a poll, for metrics and tests.
type Stats struct {
	Queued           int // events waiting in app queues
	PausedPartitions int // held back by flow control: paused, or all while polling stops
}

// Ledger remembers which events Heap already accepted.
type Ledger interface {
	Delivered(ctx context.Context, app string, keys []ledger.Key) (map[string]bool, error)
	Record(ctx context.Context, app string, keys []ledger.Key) error
}

// Config is what the emitter needs.
type Config struct {
	Brokers    []string
	Topics     kafka.Topics
	Group      string // default "emitter"
	InstanceID string // static group membership, as in the mapper; empty: dynamic
	Sources    *source.Sources
	Codec      *events.Codec
	Heap       Tracker
	HeapURL    string // HEAP_API_URL; empty means each source's region default
	Pacer      Pacer  // nil: no pacing
	// PacePeriod is the window of the per-minute limits; tests shorten it.
	PacePeriod time.Duration
	Observe    func(Stats) // called after each poll, when set
	Metrics    *metrics.Pipeline
	Ledger     Ledger        // nil: no ledger (Heap's idempotency key alone dedups)
	Status     *status.Store // per-source counts for the status page; nil: none
	Log        *zap.Logger
	MaxPoll    int           // records per poll; default 5000
	MaxBatch   int           // events per request; default and at most heap.MaxBatch
	MaxQueued  int           // events queued per app before its partitions pause (at most twice that: flowControl); default 5000, paced: less (queueAhead)
	Linger     time.Duration // wait for a fuller batch; default 20ms
	PollWait   time.Duration // longest poll before the backlog is observed again; default 250ms
	MaxBackoff time.Duration // default 30s
	ClientOpts []kgo.Opt
}

// Run consumes heap.events until ctx ends, then commits what was delivered.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	l := newLoop(cfg)
	opts := append(slices.Clone(cfg.ClientOpts),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Events),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		// A resumed partition joins the next fetch: keep long polls short.
		kgo.FetchMaxWait(time.Second),
		// A fetch is held decompressed until polled (the mapper's comment).
		kgo.FetchMaxBytes(2<<20),
		// accept copies what it queues and recycles the polled records.
		kgo.WithPools(&kafka.FetchPools{}),
		kgo.OnPartitionsAssigned(l.assigned),
		kgo.OnPartitionsRevoked(l.revoked),
		kgo.OnPartitionsLost(l.lost),
	)
	opts = append(opts, kafka.GroupOpts(cfg.Group, cfg.InstanceID)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("emitter: client: %w", err)
	}
	l.cl = cl
	defer cl.Close()
	return l.run(ctx)
}

// withDefaults is cfg with its zero settings defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.Group == "" {
		cfg.Group = "emitter"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 5000
	}
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > heap.MaxBatch {
		cfg.MaxBatch = heap.MaxBatch
	}
	if cfg.MaxQueued <= 0 {
		// Five full requests ahead keep an unpaced worker busy; a queued
		// event holds its record (the Avro bytes, ~0.5 KB with its share of
		// the fetched batch), decoded only when its request is built.
		cfg.MaxQueued = 5000
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 250 * time.Millisecond
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.PacePeriod <= 0 {
		cfg.PacePeriod = time.Minute
	}
	return cfg
}

// client is what the loop uses of its Kafka client (a *kgo.Client; a fake
// in unit tests).
type client interface {
	PollRecords(ctx context.Context, maxPollRecords int) kgo.Fetches
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	MarkCommitRecords(rs ...*kgo.Record)
	CommitMarkedOffsets(ctx context.Context) error
	PauseFetchPartitions(topicPartitions map[string][]int32) map[string][]int32
	ResumeFetchPartitions(topicPartitions map[string][]int32)
}

// newLoop is a loop of cfg, defaulted, without its client yet.
func newLoop(cfg Config) *loop {
	return &loop{cfg: cfg, parts: map[tp]*partition{}, queues: map[batchKey]*queue{}, idents: map[batchKey]*pacing.Identities{},
		sources: map[string]*source.Source{}, headerKeys: map[string]string{}, apps: map[string]string{},
		unstall: make(chan struct{}, 1)}
}

type loop struct {
	cfg Config
	cl  client

	mu     sync.Mutex
	parts  map[tp]*partition
	queues map[batchKey]*queue
	paused map[tp]bool
	idents map[batchKey]*pacing.Identities
	// sources by id, one copy each (a Source is large; items point here).
	sources map[string]*source.Source
	// header names, one copy each: a polled record's may point into its batch.
	headerKeys map[string]string
	apps       map[string]string // interned app ids and event names
	// stall: every assigned partition is held, so the poll loop stops
	// polling rather than pausing them all (flowControl); unstall wakes it.
	stall   bool
	unstall chan struct{}
	wg      sync.WaitGroup
}

func (l *loop) run(ctx context.Context) error {
	workCtx, stopWork := context.WithCancel(ctx)
	defer func() {
		stopWork()
		l.wg.Wait()
		// Commit what was delivered before leaving the group.
		l.mu.Lock()
		l.markAll()
		l.mu.Unlock()
		commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := l.cl.CommitMarkedOffsets(commitCtx); err != nil {
			l.cfg.Log.Warn("final offset commit failed; delivered events may be sent again", zap.Error(err))
		}
	}()
	for {
		l.mu.Lock()
		stalled := l.stall
		l.mu.Unlock()
		if stalled {
			if !l.waitUnstall(ctx) {
				return nil
			}
		} else if !l.poll(ctx, workCtx) {
			return nil
		}
		l.mu.Lock()
		l.flowControl()
		l.markAll()
		st := Stats{PausedPartitions: len(l.paused)}
		if l.stall {
			st.PausedPartitions = len(l.parts)
		}
		for _, q := range l.queues {
			st.Queued += len(q.items) + q.inflight
		}
		l.mu.Unlock()
		l.cfg.Metrics.Backlog(st.Queued, st.PausedPartitions)
		if l.cfg.Observe != nil {
			l.cfg.Observe(st)
		}
	}
}

// poll takes the next records into the queues. It returns false once ctx
// ended or the client closed.
func (l *loop) poll(ctx, workCtx context.Context) bool {
	pollCtx, cancel := context.WithTimeout(ctx, l.cfg.PollWait)
	fetches := l.cl.PollRecords(pollCtx, l.cfg.MaxPoll)
	cancel()
	if ctx.Err() != nil || fetches.IsClientClosed() {
		return false
	}
	fetches.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			l.cfg.Log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		}
	})
	recs := fetches.Records()
	if !l.learn(ctx, recs) {
		return false
	}
	l.accept(workCtx, recs)
	return true
}

// learn has the codec fetch from the schema registry, before accept decodes
// recs under mu, the writer schemas it has not met: a registry outage waits
// here, and never dead-letters a record it could read. False: ctx ended.
func (l *loop) learn(ctx context.Context, recs []*kgo.Record) bool {
	return l.retry(ctx, "schema registry lookup", func() error {
		for _, r := range recs {
			if err := l.cfg.Codec.Learn(ctx, r.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitUnstall waits, instead of polling, until a queue drained or PollWait
// passed (to commit what was delivered meanwhile). False: ctx ended.
func (l *loop) waitUnstall(ctx context.Context) bool {
	t := time.NewTimer(l.cfg.PollWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-l.unstall:
	case <-t.C:
	}
	return true
}

// retry runs fn until it succeeds or ctx ends, backing off on errors: a
// dependency outage pauses delivery, it never drops or dead-letters events.
func (l *loop) retry(ctx context.Context, what string, fn func() error) bool {
	return retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: l.cfg.MaxBackoff,
		Notify: func(err error, wait time.Duration) {
			l.cfg.Log.Warn(what+" failed; retrying", zap.Duration("in", wait), zap.Error(err))
		}}, fn) == nil
}
