// Package emitter delivers heap.events to Heap's Track API in bulk requests,
// paced under Heap's limits, and commits offsets only up to the contiguous
// prefix of events Heap accepted or that were dead-lettered with Heap's answer.
//
// One goroutine polls Kafka and hands each event to the queue of its Heap app;
// one worker per app packs, paces and sends requests. An app whose queue is
// full (its budget is spent, or Heap is down) pauses the partitions holding its
// events, so memory stays bounded while other apps keep flowing.
package emitter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
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
	Sources    *config.Sources
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
	l := &loop{cfg: cfg, parts: map[tp]*partition{}, queues: map[batchKey]*queue{}, idents: map[batchKey]*pacing.Identities{},
		sources: map[string]*config.Source{}, headerKeys: map[string]string{}, apps: map[string]string{},
		unstall: make(chan struct{}, 1)}
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

type tp struct {
	topic string
	part  int32
}

type batchKey struct{ url, app string }

// entry is one polled record's place in its partition, for the commit:
// done once Heap accepted its event or it was dead-lettered.
type entry struct {
	offset int64
	epoch  int32
	done   bool
}

// partition tracks the polled, not yet committable records of one partition.
type partition struct {
	key     tp
	entries []*entry       // offset order
	apps    map[*queue]int // events polled, per app queue
	gone    bool           // revoked: its queued items are abandoned
}

// item is one queued event. It keeps a compact copy of its record (key,
// value and headers in one allocation, for its request and a dead letter),
// not the polled record, which would keep its whole fetched batch in
// memory, and the few fields routing, pacing, the ledger and the counts
// read: prepare encodes a request's events when it builds it, so a backlog
// costs its records and no more.
type item struct {
	e          *entry
	p          *partition
	src        *config.Source
	key, value []byte
	hdrs       []kgo.RecordHeader
	identity   string
	name       string // the Heap event's
	id         string // the event id: Heap's idempotency key
	json       []byte // the Heap event, while prepared
	at         int64  // the Mailchimp event's time, Unix ms
	received   int64  // ingress receipt, Unix ms (set by prepare)
}

// record is the item's record again, for a dead letter.
func (it *item) record() *kgo.Record {
	return &kgo.Record{Topic: it.p.key.topic, Partition: it.p.key.part, Offset: it.e.offset, LeaderEpoch: it.e.epoch,
		Key: it.key, Value: it.value, Headers: it.hdrs}
}

type queue struct {
	key      batchKey
	items    []*item
	inflight int // taken by the worker, not finished
	wake     chan struct{}
	paused   bool
	max      int       // events queued before its partitions pause
	short    time.Time // zero, or since when a short batch waits (shortWait)
}

// poke wakes q's worker, or leaves it the wake-up already pending.
func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type loop struct {
	cfg Config
	cl  *kgo.Client

	mu     sync.Mutex
	parts  map[tp]*partition
	queues map[batchKey]*queue
	paused map[tp]bool
	idents map[batchKey]*pacing.Identities
	// sources by id, one copy each (a Source is large; items point here).
	sources map[string]*config.Source
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

// accept registers polled records and queues their events per app.
func (l *loop) accept(ctx context.Context, recs []*kgo.Record) {
	var dead []*kgo.Record
	var deadEntries []*entry
	l.mu.Lock()
	defer func() {
		l.mu.Unlock()
		if len(dead) > 0 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				if l.produceDead(ctx, dead) {
					l.finish(deadEntries)
				}
			}()
		}
	}()
	var p *partition // the last record's: a poll brings runs of one partition
	var q *queue     // the last record's
	for _, r := range recs {
		if key := (tp{r.Topic, r.Partition}); p == nil || p.key != key {
			if p = l.parts[key]; p == nil {
				// Revoked since the poll (assigned registers a partition
				// before it is fetched): its next owner sends these.
				continue
			}
		}
		e := &entry{offset: r.Offset, epoch: r.LeaderEpoch}
		p.entries = append(p.entries, e)
		// What routing and the ledger need; prepare decodes the rest and
		// encodes it for Heap. ev's strings share r's bytes, which its
		// batch reuses once recycled.
		ev, err := l.cfg.Codec.RouteView(r.Value)
		if err != nil {
			dead, deadEntries = append(dead, l.deadLetter(r, "undecodable: "+err.Error())), append(deadEntries, e)
			continue
		}
		src := l.source(ev.SourceID)
		if src == nil {
			dead, deadEntries = append(dead, l.deadLetter(r, "unknown source "+ev.SourceID)), append(deadEntries, e)
			continue
		}
		qd := &queued{}
		keys := ev.ID + ev.Identity // one copy for both
		qd.it = item{e: e, p: p, src: src, at: ev.Time.UnixMilli(),
			identity: keys[len(ev.ID):], name: l.intern(ev.Name), id: keys[:len(ev.ID)]}
		l.compact(r, &qd.it, qd.hdrs[:0])
		if url := src.HeapURL(l.cfg.HeapURL); q == nil || q.key.app != ev.AppID || q.key.url != url {
			k := batchKey{url: url, app: l.intern(ev.AppID)}
			if q = l.queues[k]; q == nil {
				q = &queue{key: k, wake: make(chan struct{}, 1), max: l.queueMax(src)}
				l.queues[k] = q
				l.wg.Add(1)
				go l.work(ctx, q)
			}
		}
		// Its batch's buffer is reused once all its records are recycled:
		// nothing may point into it after (ev does; a dead letter too: kept).
		r.Recycle()
		q.items = append(q.items, &qd.it)
		p.apps[q]++
		q.poke()
	}
}

// source returns the configured source with id, or nil. Caller holds mu.
func (l *loop) source(id string) *config.Source {
	if src, ok := l.sources[id]; ok {
		return src
	}
	src, ok := l.cfg.Sources.Get(id)
	if !ok {
		return nil
	}
	l.sources[src.ID] = &src
	return &src
}

// intern returns app ids and event names as one string each, not sharing
// a record's bytes: a handful of them, every record naming one. Caller
// holds mu.
func (l *loop) intern(app string) string {
	if s, ok := l.apps[app]; ok {
		return s
	}
	s := strings.Clone(app)
	if len(l.apps) < 4096 {
		l.apps[s] = s
	}
	return s
}

// queued is a queued record's item and its headers, in one allocation.
// Its entry is apart: an entry waits for the partition's commit long after
// its event is done, and must not keep the rest alive meanwhile.
type queued struct {
	it   item
	hdrs [3]kgo.RecordHeader // heap.events records have three
}

// queueAhead is how much of a paced app's rate its queue holds: enough for
// its next requests while its partitions resume and refill (a poll or two),
// with the queue resuming at half. Holding more only costs memory: the
// pacer sends no faster.
const queueAhead = 12 * time.Second

// queueMax is how many events an app's queue holds before its partitions
// pause: MaxQueued, or for a paced app queueAhead of its rate and at least
// four full requests.
func (l *loop) queueMax(src *config.Source) int {
	if l.cfg.Pacer == nil {
		return l.cfg.MaxQueued
	}
	perMin, burst := pacing.Budget(src.AppEventsPerMinute)
	ahead := int(float64(perMin) * queueAhead.Seconds() / l.cfg.PacePeriod.Seconds())
	return min(l.cfg.MaxQueued, max(4*min(burst, l.cfg.MaxBatch), ahead))
}

// flowControl pauses the partitions holding events of apps whose queue is
// full, until it drained to half. Apps share partitions, and a fetch brings
// each app the share its partitions hold, which is not the share it sends:
// pausing whenever the fullest app is full would starve the emptiest one,
// whose queue runs short. So a partition also holding events of an app that
// has drained below half stays fetched, letting the full apps grow to twice
// their bound; only that stops it. Caller holds mu.
func (l *loop) flowControl() {
	for _, q := range l.queues {
		switch n := len(q.items) + q.inflight; {
		case n >= q.max && !q.paused:
			q.paused = true
			l.cfg.Log.Info("app backlog full; pausing its partitions", zap.String("app", q.key.app), zap.Int("queued", n))
		case n <= q.max/2 && q.paused:
			q.paused = false
			l.cfg.Log.Info("app backlog drained; resuming", zap.String("app", q.key.app), zap.Int("queued", n))
		}
	}
	want := map[tp]bool{}
	for key, p := range l.parts {
		full, needy, over := false, false, false
		for q := range p.apps {
			n := len(q.items) + q.inflight
			full = full || q.paused
			needy = needy || n < q.max/2
			over = over || n >= 2*q.max
		}
		if over || full && !needy {
			want[key] = true
		}
	}
	// Every assigned partition held: stop polling instead of pausing them.
	// kgo drops a paused partition's buffered records, to fetch them again
	// once resumed: a backlog read that way was fetched and decoded about
	// 1.7 times. Not polling keeps them (one fetch) and fetches no more.
	stall := len(want) > 0 && len(want) == len(l.parts)
	if stall {
		clear(want)
	}
	l.setPaused(want)
	if !stall {
		l.wakeStalled() // were it stalled, it polls again now
	}
	l.stall = stall
}

// setPaused pauses the partitions in want and resumes the others. Caller
// holds mu.
func (l *loop) setPaused(want map[tp]bool) {
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for key := range want {
		if !l.paused[key] {
			pause[key.topic] = append(pause[key.topic], key.part)
		}
	}
	for key := range l.paused {
		if !want[key] {
			resume[key.topic] = append(resume[key.topic], key.part)
		}
	}
	if len(pause) > 0 {
		l.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		l.cl.ResumeFetchPartitions(resume)
	}
	l.paused = want
}

// assigned registers the partitions assigned, with or without records yet:
// flowControl stalls polling only when every one of them is held.
func (l *loop) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range m {
		for _, part := range parts {
			key := tp{topic, part}
			if l.parts[key] == nil {
				l.parts[key] = &partition{key: key, apps: map[*queue]int{}}
			}
		}
	}
	l.wakeStalled()
}

// wakeStalled has a stalled poll loop look again now, not after PollWait:
// the partitions changed. Caller holds mu.
func (l *loop) wakeStalled() {
	if l.stall {
		select {
		case l.unstall <- struct{}{}:
		default:
		}
	}
}

// markAll marks, per partition, the contiguous prefix of done records for
// the next autocommit. Caller holds mu.
func (l *loop) markAll() {
	for _, p := range l.parts {
		l.markPrefix(p)
	}
}

func (l *loop) markPrefix(p *partition) {
	i := 0
	for i < len(p.entries) && p.entries[i].done {
		i++
	}
	if i == 0 {
		return
	}
	last := p.entries[i-1]
	l.cl.MarkCommitRecords(&kgo.Record{Topic: p.key.topic, Partition: p.key.part, Offset: last.offset, LeaderEpoch: last.epoch})
	// Clear what the slice no longer shows: the array would keep the done
	// records (and their fetched batches) until it is next grown.
	clear(p.entries[:i])
	p.entries = p.entries[i:]
}

// revoked marks what was delivered on the revoked partitions, commits it,
// and abandons their queued events: the next owner sends them.
func (l *loop) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	l.drop(m, true)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		l.cfg.Log.Warn("commit on revoke failed; delivered events may be sent again", zap.Error(err))
	}
}

func (l *loop) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) { l.drop(m, false) }

func (l *loop) drop(m map[string][]int32, mark bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	resume := map[string][]int32{}
	for topic, parts := range m {
		for _, part := range parts {
			key := tp{topic, part}
			if l.paused[key] {
				// kgo keeps a partition paused across a revoke: were it
				// assigned back, nothing here would resume it.
				resume[topic] = append(resume[topic], part)
				delete(l.paused, key)
			}
			p := l.parts[key]
			if p == nil {
				continue
			}
			if mark {
				l.markPrefix(p)
			}
			p.gone = true
			delete(l.parts, key)
		}
	}
	if len(resume) > 0 {
		l.cl.ResumeFetchPartitions(resume)
	}
	for _, q := range l.queues {
		q.items = slices.DeleteFunc(q.items, func(it *item) bool { return it.p.gone })
	}
	l.wakeStalled()
}

// finish marks entries done.
func (l *loop) finish(es []*entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range es {
		e.done = true
	}
}

// compact copies what a queued record needs (its key, value and headers,
// for the request and a dead letter) into it: the bytes in one allocation,
// the headers in hdrs when they fit. Caller holds mu.
func (l *loop) compact(r *kgo.Record, it *item, hdrs []kgo.RecordHeader) {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		i := len(buf)
		buf = append(buf, b...)
		return buf[i:len(buf):len(buf)]
	}
	it.key, it.value = cp(r.Key), cp(r.Value)
	if len(r.Headers) > 0 {
		if len(r.Headers) <= cap(hdrs) {
			it.hdrs = hdrs[:len(r.Headers)]
		} else {
			it.hdrs = make([]kgo.RecordHeader, len(r.Headers))
		}
		for i, h := range r.Headers {
			k, ok := l.headerKeys[h.Key]
			if !ok && len(l.headerKeys) < 64 {
				k = strings.Clone(h.Key)
				l.headerKeys[k] = k
			} else if !ok {
				k = strings.Clone(h.Key)
			}
			it.hdrs[i] = kgo.RecordHeader{Key: k, Value: cp(h.Value)}
		}
	}
}

// work sends one app's queue until ctx ends, one request at a time, in
// three stages: it prepares the next request (decoding, ledger lookup)
// while a sender paces and sends one and a recorder notes the last one
// sent (ledger, counts) and marks it done. Heap waits on neither Redis nor
// the preparation.
func (l *loop) work(ctx context.Context, q *queue) {
	defer l.wg.Done()
	ready := make(chan prepared) // unbuffered: one batch prepared, one sent
	sent := make(chan sentBatch)
	var stages sync.WaitGroup
	stages.Go(func() {
		defer close(sent)
		var evs [][]byte // each request's, reused
		for p := range ready {
			s, ok := l.deliver(ctx, q.key, p.items, &evs)
			if !ok {
				return // ctx ended: undelivered events stay uncommitted
			}
			p.release()
			sent <- s
		}
	})
	stages.Go(func() {
		for s := range sent {
			l.record(ctx, q.key, s)
			l.mu.Lock()
			q.inflight -= s.n
			if n := len(q.items) + q.inflight; q.paused && n <= q.max/2 || n < q.max/2 && l.pausedFor(q) {
				// Resume now (this queue drained, or it is short and a
				// partition paused for another app holds its events), not
				// after the poll loop's next poll: that waits on the paused
				// partitions' fetch (up to PollWait) while this queue runs dry.
				l.flowControl()
			}
			l.mu.Unlock()
			q.poke()
		}
	})
	defer func() {
		close(ready)
		stages.Wait()
	}()
	var sc scratch
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for {
			l.mu.Lock()
			n, limit, busy := len(q.items), l.batchLimit(q), q.inflight > 0
			var wait time.Duration
			if n > 0 && n < limit && !busy {
				wait = l.shortWait(q, time.Now())
			} else if n >= limit {
				q.short = time.Time{}
			}
			l.mu.Unlock()
			if n == 0 || n < limit && busy {
				// A short batch waits for the one in flight (the recorder
				// wakes us): under backlog every request goes out full.
				break
			}
			if wait > 0 {
				time.AfterFunc(wait, q.poke)
				break
			}
			batch := l.take(ctx, q)
			if len(batch) == 0 {
				break
			}
			taken := len(batch)
			p, ok := l.prepare(ctx, q.key, batch, &sc)
			if !ok {
				return
			}
			l.mu.Lock()
			q.inflight -= taken - len(p.items) // dead-lettered or already delivered
			l.mu.Unlock()
			if len(p.items) == 0 {
				p.release()
				continue
			}
			select {
			case ready <- p:
			case <-ctx.Done():
				return
			}
		}
	}
}

// shortWait is how much longer a paced app's short batch waits for more of
// its events while a partition holding them is paused (flow control, for
// another app's full queue): at most the time its budget takes to grant a
// full batch, so the wait costs no throughput and the request goes out
// full. 0: send now. Caller holds mu.
func (l *loop) shortWait(q *queue, now time.Time) time.Duration {
	perMin := q.items[0].src.AppEventsPerMinute
	if l.cfg.Pacer == nil || perMin <= 0 || !l.pausedFor(q) {
		q.short = time.Time{}
		return 0
	}
	if q.short.IsZero() {
		q.short = now
	}
	if left := time.Duration(l.batchLimit(q))*time.Minute/time.Duration(perMin) - now.Sub(q.short); left > 0 {
		return left
	}
	q.short = time.Time{} // waited enough: this one goes short, the next waits again
	return 0
}

// pausedFor reports whether a paused partition has carried q's events.
// Caller holds mu.
func (l *loop) pausedFor(q *queue) bool {
	if l.stall {
		return true
	}
	for key := range l.paused {
		if p := l.parts[key]; p != nil && p.apps[q] > 0 {
			return true
		}
	}
	return false
}

// take pops the next batch, lingering briefly for a fuller one.
func (l *loop) take(ctx context.Context, q *queue) []*item {
	l.mu.Lock()
	n, limit := len(q.items), l.batchLimit(q)
	l.mu.Unlock()
	if n > 0 && n < limit {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(l.cfg.Linger):
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	limit = l.batchLimit(q)
	perIdentity := limit
	if l.cfg.Pacer != nil && len(q.items) > 0 {
		// An identity's budget grants at most its burst at once; its later
		// events wait for the next batch, in order.
		perIdentity = pacing.MaxBatch(q.items[0].src.IdentityEventsPerMinute)
	}
	if perIdentity >= limit { // unpaced: the first limit, in order
		n := min(limit, len(q.items))
		batch := slices.Clone(q.items[:n])
		rest := copy(q.items, q.items[n:])
		clear(q.items[rest:])
		q.items = q.items[:rest]
		q.inflight += n
		return batch
	}
	counts := map[string]int{}
	var batch []*item
	rest := q.items[:0]
	for _, it := range q.items {
		if len(batch) < limit && counts[it.identity] < perIdentity {
			counts[it.identity]++
			batch = append(batch, it)
		} else {
			rest = append(rest, it)
		}
	}
	clear(q.items[len(rest):])
	q.items = rest
	q.inflight += len(batch)
	return batch
}

// batchLimit is the largest request: Heap's 1000, or less when pacing grants less. Caller holds mu.
func (l *loop) batchLimit(q *queue) int {
	limit := l.cfg.MaxBatch
	if len(q.items) > 0 && l.cfg.Pacer != nil {
		limit = min(limit, pacing.MaxBatch(q.items[0].src.AppEventsPerMinute))
	}
	return limit
}

// retry runs fn until it succeeds or ctx ends, backing off on errors: a
// dependency outage pauses delivery, it never drops or dead-letters events.
func (l *loop) retry(ctx context.Context, what string, fn func() error) bool {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = l.cfg.MaxBackoff
	for {
		err := fn()
		if err == nil {
			return true
		}
		wait := bo.NextBackOff()
		l.cfg.Log.Warn(what+" failed; retrying", zap.Duration("in", wait), zap.Error(err))
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// prepared is a batch ready to send: its events' JSON in arena.
type prepared struct {
	items []*item
	arena *[]byte
}

// arenas hold prepared batches' JSON, reused once they were sent.
var arenas = sync.Pool{New: func() any { return new([]byte) }}

// release gives p's arena back; its items' JSON goes with it.
func (p prepared) release() {
	for _, it := range p.items {
		it.json = nil
	}
	if cap(*p.arena) <= 8<<20 { // a rare huge batch is not kept
		arenas.Put(p.arena)
	}
}

// scratch is a worker's reused memory for encoding events.
type scratch struct {
	props []heap.Property
	ts    [32]byte
	ends  []int
}

// prepare finishes what the ledger says Heap already has of a taken batch,
// encodes the rest for Heap and dead-letters what does not encode. It
// returns what is left to send, or false when ctx ended first.
func (l *loop) prepare(ctx context.Context, k batchKey, batch []*item, sc *scratch) (prepared, bool) {
	batch, ok := l.skipDelivered(ctx, k, batch)
	if !ok {
		return prepared{}, false
	}
	p, bad := l.encode(batch, sc)
	if len(bad) > 0 && !l.deadLettered(ctx, k, bad) {
		p.release()
		return prepared{}, false
	}
	return p, true
}

// encode writes each item's Heap event into an arena, as its JSON. An
// event is decoded whole here, from its record's compact copy, whose bytes
// its strings share while it is encoded (accept read only its route). What
// does not decode, or encode, it returns as dead letters.
func (l *loop) encode(batch []*item, sc *scratch) (prepared, []deadItem) {
	arena := arenas.Get().(*[]byte)
	buf, ends := (*arena)[:0], sc.ends[:0]
	var dead []deadItem
	batch = slices.DeleteFunc(batch, func(it *item) bool {
		ev, err := l.cfg.Codec.DecodeView(it.value)
		if err != nil {
			dead = append(dead, deadItem{it.e, l.deadLetter(it.record(), "undecodable: "+err.Error()), it.src.ID})
			return true
		}
		hev := heapEvent(sc.props[:0], ev, heap.AppendTimestamp(sc.ts[:0], ev.Time))
		sc.props = hev.Properties[:0]
		n := len(buf)
		if buf, err = heap.AppendEvent(buf, hev); err != nil {
			buf = buf[:n]
			dead = append(dead, deadItem{it.e, l.deadLetter(it.record(), "not encodable for Heap: "+err.Error()), it.src.ID})
			return true
		}
		ends = append(ends, len(buf))
		it.received = ev.Lineage.ReceivedAt.UnixMilli()
		return false
	})
	start := 0
	for i, it := range batch { // after the last append: buf may have moved
		it.json = buf[start:ends[i]:ends[i]]
		start = ends[i]
	}
	*arena, sc.ends = buf, ends
	return prepared{batch, arena}, dead
}

// skipDelivered finishes what the ledger says Heap already has of batch,
// and returns the rest, or false when ctx ended first.
func (l *loop) skipDelivered(ctx context.Context, k batchKey, batch []*item) ([]*item, bool) {
	if l.cfg.Ledger == nil {
		return batch, true
	}
	var seen map[string]bool
	keys := ledgerKeys(batch)
	if !l.retry(ctx, "ledger lookup", func() (err error) { seen, err = l.cfg.Ledger.Delivered(ctx, k.app, keys); return err }) {
		return nil, false
	}
	var skipped []*entry
	batch = slices.DeleteFunc(batch, func(it *item) bool {
		if seen[it.id] {
			l.cfg.Metrics.Inc(metrics.EmitterEvents, k.app, it.name, "already_delivered")
			skipped = append(skipped, it.e)
			return true
		}
		return false
	})
	l.finish(skipped)
	return batch, true
}

// sentBatch is what Heap took of a batch of n events, and what it refused.
type sentBatch struct {
	n         int
	delivered []*item
	dead      []deadItem
	at        time.Time
}

// deliver paces a prepared batch and sends it to Heap. It returns false
// only when ctx ended first.
func (l *loop) deliver(ctx context.Context, k batchKey, batch []*item, evs *[][]byte) (sentBatch, bool) {
	if !l.pace(ctx, k, batch[0].src, batch) {
		return sentBatch{}, false
	}
	delivered, dead, err := l.send(ctx, k, batch, evs)
	if err != nil {
		return sentBatch{}, false
	}
	return sentBatch{n: len(batch), delivered: delivered, dead: dead, at: time.Now()}, true
}

// record notes a sent batch in the ledger and the counts, marks its
// delivered events done and dead-letters what Heap refused.
func (l *loop) record(ctx context.Context, k batchKey, s sentBatch) {
	// Heap has these events: note them even while shutting down.
	noteCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if l.cfg.Ledger != nil && len(s.delivered) > 0 {
		// Best effort: Heap's idempotency key still guards a resend.
		if err := l.cfg.Ledger.Record(noteCtx, k.app, ledgerKeys(s.delivered)); err != nil {
			l.cfg.Log.Warn("ledger record failed", zap.String("app", k.app), zap.Error(err))
		}
	}
	// One counter update per event name, not per event.
	byName := map[string]int{}
	for _, it := range s.delivered {
		byName[it.name]++
		l.cfg.Metrics.Latency(time.UnixMilli(it.at), time.UnixMilli(it.received), s.at)
	}
	for name, n := range byName {
		l.cfg.Metrics.Add(metrics.EmitterEvents, float64(n), k.app, name, "delivered")
	}
	l.recordDelivered(noteCtx, s.delivered, s.at)
	l.finish(entries(s.delivered))
	if len(s.dead) > 0 {
		l.deadLettered(ctx, k, s.dead) // false: ctx ended, they stay uncommitted
	}
}

// deadLettered writes dead letters and marks them done. It returns false
// only when ctx ended first.
func (l *loop) deadLettered(ctx context.Context, k batchKey, dead []deadItem) bool {
	recs := make([]*kgo.Record, len(dead))
	for i, d := range dead {
		recs[i] = d.rec
	}
	if !l.produceDead(ctx, recs) {
		return false
	}
	es := make([]*entry, len(dead))
	for i, d := range dead {
		es[i] = d.e
	}
	l.cfg.Metrics.Add(metrics.EmitterEvents, float64(len(dead)), k.app, "", "dead_lettered")
	l.recordRejected(ctx, dead)
	l.finish(es)
	return true
}

// recordDelivered counts delivered events per source and event name for the
// status page. Best effort: a lost count never holds back delivery.
func (l *loop) recordDelivered(ctx context.Context, delivered []*item, at time.Time) {
	if l.cfg.Status == nil || len(delivered) == 0 {
		return
	}
	per := map[string]map[string]int{}
	for _, it := range delivered {
		if per[it.src.ID] == nil {
			per[it.src.ID] = map[string]int{}
		}
		per[it.src.ID][it.name]++
	}
	for src, counts := range per {
		if err := l.cfg.Status.Delivered(ctx, src, counts, at); err != nil {
			l.cfg.Log.Warn("status: record delivered failed", zap.String("source", src), zap.Error(err))
		}
	}
}

// recordRejected counts the events Heap rejected, per source.
func (l *loop) recordRejected(ctx context.Context, dead []deadItem) {
	if l.cfg.Status == nil {
		return
	}
	per := map[string]int{}
	for _, d := range dead {
		per[d.source]++
	}
	for src, n := range per {
		if err := l.cfg.Status.DeadLettered(ctx, src, status.ReasonHeapRejected, n); err != nil {
			l.cfg.Log.Warn("status: record dead letters failed", zap.String("source", src), zap.Error(err))
		}
	}
}

func ledgerKeys(items []*item) []ledger.Key {
	keys := make([]ledger.Key, len(items))
	for i, it := range items {
		keys[i] = ledger.Key{ID: it.id, Time: time.UnixMilli(it.at)}
	}
	return keys
}

func entries(items []*item) []*entry {
	es := make([]*entry, len(items))
	for i, it := range items {
		es[i] = it.e
	}
	return es
}

// pace reserves the batch in the app's and its identities' budgets for one
// send time and waits until then, so the batch is sent as both budgets
// counted it. The app's budget is reserved ahead (see package pacing): the
// worker comes back late without losing any of it.
func (l *loop) pace(ctx context.Context, k batchKey, src *config.Source, batch []*item) bool {
	if l.cfg.Pacer == nil {
		return true
	}
	ids := l.identities(k, src)
	per := map[string]int{}
	for _, it := range batch {
		per[it.identity]++
	}
	for {
		// The identities first: waiting for them spends no app budget.
		if wait := ids.Wait(per, time.Now()); wait > 0 {
			l.cfg.Log.Debug("identity budget spent; waiting", zap.String("app", k.app), zap.Duration("wait", wait))
			l.cfg.Metrics.Add(metrics.PacingWait, wait.Seconds(), k.app, "identity")
			if !sleep(ctx, wait) {
				return false
			}
			continue
		}
		var wait time.Duration
		if !l.retry(ctx, "app pacing", func() (err error) {
			wait, err = l.cfg.Pacer.Reserve(ctx, k.app, src.AppEventsPerMinute, len(batch))
			return err
		}) {
			return false
		}
		at := time.Now().Add(wait)
		// The identities' budgets only grew since Wait, so this fits but
		// for another worker of the same app and identities (none: one
		// worker per app and Heap URL). If not, the app's reservation is
		// left unused: under the limit, never over it.
		idWait := ids.Take(per, at)
		if wait > 0 {
			l.cfg.Log.Debug("app budget spent; waiting", zap.String("app", k.app), zap.Duration("wait", wait))
			l.cfg.Metrics.Add(metrics.PacingWait, wait.Seconds(), k.app, "app")
		}
		if !sleep(ctx, time.Until(at)+idWait) {
			return false
		}
		if idWait == 0 {
			return true
		}
	}
}

// identities is the identity budget of one worker's app.
func (l *loop) identities(k batchKey, src *config.Source) *pacing.Identities {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.idents[k]
	if ids == nil {
		ids = pacing.NewIdentities(src.IdentityEventsPerMinute, l.cfg.PacePeriod)
		l.idents[k] = ids
	}
	return ids
}

type deadItem struct {
	e      *entry
	rec    *kgo.Record
	source string
}

// send delivers items, retrying what may succeed later and splitting a
// rejected request until the bad events are isolated. It returns the
// delivered items and the dead letters, or ctx's error. It builds each
// request's events in scratch, whose array it reuses: Track is done with
// them when it returns.
func (l *loop) send(ctx context.Context, k batchKey, items []*item, scratch *[][]byte) ([]*item, []deadItem, error) {
	evs := (*scratch)[:0]
	for _, it := range items {
		evs = append(evs, it.json)
	}
	*scratch = evs
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = l.cfg.MaxBackoff
	for {
		err := l.cfg.Heap.TrackEncoded(ctx, k.url, k.app, evs)
		switch {
		case err == nil:
			l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "ok")
			l.cfg.Log.Debug("delivered", zap.String("app", k.app), zap.Int("events", len(evs)))
			return items, nil, nil
		case errors.Is(err, heap.ErrRejected):
			l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "rejected")
			if len(items) == 1 {
				return nil, []deadItem{{items[0].e, l.deadLetter(items[0].record(), err.Error()), items[0].src.ID}}, nil
			}
			half := len(items) / 2
			okA, deadA, err := l.send(ctx, k, items[:half], scratch)
			if err != nil {
				return nil, nil, err
			}
			okB, deadB, err := l.send(ctx, k, items[half:], scratch)
			return append(okA, okB...), append(deadA, deadB...), err
		}
		l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "retryable")
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		wait := max(heap.RetryAfter(err), bo.NextBackOff())
		l.cfg.Log.Warn("heap track failed; retrying", zap.String("app", k.app), zap.Int("events", len(evs)),
			zap.Duration("in", wait), zap.Error(err))
		if !sleep(ctx, wait) {
			return nil, nil, ctx.Err()
		}
	}
}

// produceDead writes dead letters durably, retrying until ctx ends.
func (l *loop) produceDead(ctx context.Context, recs []*kgo.Record) bool {
	return l.retry(ctx, "dead-letter produce", func() error {
		return l.cl.ProduceSync(ctx, recs...).FirstErr()
	})
}

func (l *loop) deadLetter(r *kgo.Record, reason string) *kgo.Record {
	l.cfg.Log.Warn("dead-lettering event", zap.String("event_id", kafka.Header(r, kafka.HeaderEventID)),
		zap.String("reason", reason), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	return kafka.DeadLetter(r, l.cfg.Topics.EventsDLQ, reason)
}

// HeapEvent turns a mapped event into a Track API event with Heap's exact
// property names, every value cut under Heap's length limit.
func HeapEvent(e events.Event) heap.Event {
	return heapEvent(make([]heap.Property, 0, 9), e, heap.AppendTimestamp(nil, e.Time))
}

// heapEvent is HeapEvent with its properties appended to props and ts, the
// event's time already formatted: the event shares their memory, and e's.
func heapEvent(props []heap.Property, e events.Event, ts []byte) heap.Event {
	// Only read while ts is: for the event's JSON, or by HeapEvent's caller,
	// whose ts nothing else holds.
	tss := unsafe.String(unsafe.SliceData(ts), len(ts))
	add := func(k, v string) {
		if v != "" {
			props = append(props, heap.Property{Key: k, Value: heap.Truncate(v)})
		}
	}
	// In key order: the body lists them as encoding/json lists a map's keys.
	add("Bounce Type", e.BounceType)
	add("Campaign ID", e.CampaignID)
	add("Campaign Title", e.CampaignTitle)
	add("IP", e.IP)
	add("List ID", e.ListID)
	add("Subject", e.Subject)
	add("Tags", strings.Join(e.Tags, ","))
	add("Time", tss)
	add("URL", e.URL)
	return heap.Event{
		Identity:       e.Identity,
		Event:          e.Name,
		Timestamp:      tss,
		Properties:     props,
		IdempotencyKey: e.ID,
	}
}
