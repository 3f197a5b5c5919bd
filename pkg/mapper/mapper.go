// Package mapper is the transactional consume-transform-produce loop from
// mailchimp.raw to heap.events: parse, map, resolve campaign titles and
// identities through Redis, encode Avro, produce, and commit the input
// offsets in the same Kafka transaction.
package mapper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
)

// Identities resolves email keys to Heap identities for one app.
type Identities interface {
	Resolve(ctx context.Context, app string, emailKeys []string) (map[string]string, error)
}

// Campaigns remembers and looks up campaign metadata per source.
type Campaigns interface {
	Remember(ctx context.Context, source string, metas []campaigns.Meta) error
	Titles(ctx context.Context, source string, ids []string) (map[string]string, error)
}

// Status counts what a source's status page shows; nil-safe implementations
// are fine.
type Status interface {
	DeadLettered(ctx context.Context, source, reason string, n int) error
}

// Config is what the mapper needs.
type Config struct {
	Brokers       []string
	Topics        kafka.Topics
	Group         string // consumer group; default "mapper"
	TransactionID string // stable per instance, unique among live instances
	// InstanceID makes the instance a static group member: restarted under
	// the same id, it takes its partitions back at once instead of waiting
	// for the session timeout. Empty: a dynamic member.
	InstanceID string
	Sources    *config.Sources
	Codec      *events.Codec
	Identities Identities
	Campaigns  Campaigns
	Log        *zap.Logger
	MaxPoll    int // records per transaction; default DefaultMaxPoll
	// Sessions is how many transactional sessions (group members) the
	// process runs, like Kafka Streams' num.stream.threads: while one waits
	// on the broker (fetch, flush, commit), another maps. Session 0 uses
	// TransactionID and InstanceID as given, session i adds "-s<i>".
	// Default 1.
	Sessions int
	// SessionOpts, when set, adds client options of session i: each
	// session's own metrics hooks (kprom registers one client per hook).
	SessionOpts func(i int) []kgo.Opt
	Metrics     *metrics.Pipeline
	// CacheReady, when set, is asked before each batch: while the Redis
	// cache is missing (flushed, being rebuilt), mapping waits rather than
	// sending every event to pending and dropping campaign titles.
	CacheReady func(context.Context) (bool, error)
	Status     Status // optional
	ClientOpts []kgo.Opt
}

// ErrDependency marks a failure of Redis (or another dependency) that says
// nothing about the records: abort, back off, and process them again.
var ErrDependency = errors.New("dependency unavailable")

// DefaultMaxPoll is the most records a transaction maps. A transaction's
// fixed costs (the Redis lookups' round trips, flush, commit) are paid per
// poll: 4000 ran the perf harness's mapper ~1.2x as fast as 2000.
const DefaultMaxPoll = 4000

// Run consumes until ctx ends, in cfg.Sessions sessions. A session that
// fails is closed and re-created.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Group == "" {
		cfg.Group = "mapper"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = DefaultMaxPoll
	}
	if cfg.TransactionID == "" {
		return errors.New("mapper: TransactionID is required")
	}
	n := max(1, cfg.Sessions)
	if n == 1 {
		runSessions(ctx, cfg, 0)
		return nil
	}
	var wg sync.WaitGroup
	for i := range n {
		c := cfg
		if i > 0 {
			sfx := fmt.Sprintf("-s%d", i)
			c.TransactionID += sfx
			if c.InstanceID != "" {
				c.InstanceID += sfx
			}
		}
		c.Log = cfg.Log.With(zap.Int("session", i))
		wg.Go(func() { runSessions(ctx, c, i) })
	}
	wg.Wait()
	return nil
}

// runSessions runs session i until ctx ends, re-creating it after failures.
func runSessions(ctx context.Context, cfg Config, i int) {
	bo := backoff.NewExponentialBackOff()
	bo.MaxInterval = 10 * time.Second
	for {
		err := runSession(ctx, cfg, i)
		if ctx.Err() != nil {
			return
		}
		wait := bo.NextBackOff()
		cfg.Log.Error("mapper session failed; re-creating", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func runSession(ctx context.Context, cfg Config, i int) error {
	opts := slices.Clone(cfg.ClientOpts)
	if cfg.SessionOpts != nil {
		opts = append(opts, cfg.SessionOpts(i)...)
	}
	opts = append(opts,
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topics.Raw),
		kgo.TransactionalID(cfg.TransactionID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionTimeout(60*time.Second),
		// A fetch is held decompressed until polled: at the default 50 MiB
		// (1 MiB a partition) a backlog of compressed JSON kept ~60 MB of
		// heap buffered. The process's sessions share 2 MiB, still about a
		// transaction's worth each (2 MiB each took two sessions' peak RSS
		// from ~130 to ~200 MB; 4 MiB shared, on a 10x backlog, 145 to 235).
		kgo.FetchMaxBytes(int32(max(512<<10, (2<<20)/max(1, cfg.Sessions)))),
		// run recycles each poll's records once its transaction ended.
		kgo.WithPools(&kafka.FetchPools{}),
	)
	opts = append(opts, kafka.GroupOpts(cfg.Group, cfg.InstanceID)...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("mapper: session: %w", err)
	}
	defer sess.Close()
	// Take the transactional id now: this fences a killed predecessor and
	// aborts its open transaction at once. Left to the first Begin, the group's
	// offset fetch could wait on that transaction (unstable offsets) until the
	// transaction timeout, since nothing would be processed to get there.
	initCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	_, _, err = sess.Client().ProducerID(initCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("mapper: init producer id: %w", err)
	}
	m := &loop{cfg: cfg, sess: sess}
	return m.run(ctx)
}

type loop struct {
	cfg  Config
	sess *kgo.GroupTransactSession
	par  int // goroutines that map and encode a batch; 0: one per core
	// arenas of encodeAll's chunks; reusable only while flushed is set
	arenas  []*arena
	flushed bool
	evs     [][]events.Event // mapAll's chunks' events, reused (clearEvents)
}

// arena returns chunk part's arena with room for records: the last
// transaction's, reset, when all its records were flushed, else a new one.
func (m *loop) arena(part, records int) *arena {
	if !m.flushed {
		m.arenas[part] = &arena{}
	}
	m.arenas[part].reset(records)
	return m.arenas[part]
}

func (m *loop) run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxInterval = 5 * time.Second
	for {
		fetches := m.sess.PollRecords(ctx, m.cfg.MaxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			m.cfg.Log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := m.sess.Begin(); err != nil {
			return fmt.Errorf("mapper: begin: %w", err)
		}
		promise := newTxnPromise(m.sess.Client())
		var tally tally
		out, err := m.transform(ctx, recs)
		if err == nil {
			m.flushed = false // the arenas hold records now in the producer
			for _, r := range out {
				tally.add(m.cfg.Topics, r)
				m.sess.Produce(ctx, r, promise.promise())
			}
			// The transaction is whole: send what would wait out the
			// producer's linger (10 ms by default) now. Produce errors come
			// through the promise; a cancelled ctx only stops the hurry.
			m.flushed = m.sess.Client().Flush(ctx) == nil
			err = promise.Err()
		}
		// End gets its own deadline, never the shutdown context: a cancelled
		// End can leave the outcome unknown.
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		committed, endErr := m.sess.End(endCtx, kgo.TransactionEndTry(err == nil))
		cancel()
		if endErr != nil {
			return fmt.Errorf("mapper: end transaction: %w", endErr)
		}
		// The transaction ended: its output (dead letters share their
		// input's bytes) was produced or aborted, so no record of the poll
		// is needed any more, and their fetched batches can be reused.
		for _, r := range recs {
			r.Recycle()
		}
		switch {
		case err != nil:
			m.cfg.Metrics.Inc(metrics.MapperTxns, "aborted")
			wait := bo.NextBackOff()
			m.cfg.Log.Warn("batch aborted; will process again", zap.Error(err), zap.Int("records", len(recs)), zap.Duration("in", wait))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		case !committed:
			m.cfg.Metrics.Inc(metrics.MapperTxns, "rebalanced")
			m.cfg.Log.Info("transaction aborted by a rebalance; records will be processed again", zap.Int("records", len(recs)))
		default:
			m.cfg.Metrics.Inc(metrics.MapperTxns, "committed")
			m.count(ctx, tally)
			bo.Reset()
			m.cfg.Log.Debug("batch committed", zap.Int("in", len(recs)), zap.Int("out", tally.total))
		}
	}
}

// txnPromise is a transaction's produce promise: one function for all its
// records (kgo's FirstErrPromise makes one a record), keeping the first
// error and aborting what is still buffered once there is one.
type txnPromise struct {
	cl      *kgo.Client
	pending sync.WaitGroup
	mu      sync.Mutex
	err     error
	fn      func(*kgo.Record, error)
}

func newTxnPromise(cl *kgo.Client) *txnPromise {
	p := &txnPromise{cl: cl}
	p.fn = func(_ *kgo.Record, err error) {
		defer p.pending.Done()
		if err == nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.err == nil {
			p.err = err
			p.pending.Go(func() { p.cl.AbortBufferedRecords(context.Background()) })
		}
	}
	return p
}

// promise is the promise of one more record.
func (p *txnPromise) promise() func(*kgo.Record, error) {
	p.pending.Add(1)
	return p.fn
}

// Err waits for every record's promise and returns the first error.
func (p *txnPromise) Err() error {
	p.pending.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// mapped is one input record's outcome.
type mapped struct {
	rec    *kgo.Record
	source *config.Source // shared by a chunk's records of one source: Source is large
	res    mapping.Result
}

// transform maps a batch. It fails only with ErrDependency; bad records are
// dead-lettered in the output.
func (m *loop) transform(ctx context.Context, recs []*kgo.Record) ([]*kgo.Record, error) {
	if m.cfg.CacheReady != nil {
		ready, err := m.cfg.CacheReady(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDependency, err)
		}
		if !ready {
			return nil, fmt.Errorf("%w: the Redis cache is being rebuilt", ErrDependency)
		}
	}
	out, ok := m.mapAll(recs)
	defer m.clearEvents() // ok's events are encoded into the output by then
	// Identities and campaign titles are independent lookups (they set
	// different fields of the events): the identity pipelines run while the
	// campaign metadata is stored and titles are looked up.
	identErr := make(chan error, 1)
	go func() { identErr <- m.resolveIdentities(ctx, ok) }()
	if err := m.resolveCampaigns(ctx, ok); err != nil {
		<-identErr
		return nil, err
	}
	for _, mp := range ok {
		if c := mp.res.Campaign; c != nil {
			// Kafka is the truth, Redis the cache: the metadata goes to the
			// compacted topic in the same transaction.
			r, err := campaigns.Record(m.cfg.Topics.Campaigns, mp.source.ID, *c)
			if err != nil {
				<-identErr
				return nil, fmt.Errorf("mapper: %w", err)
			}
			out = append(out, r)
		}
		if ch := mp.res.EmailChange; ch != nil && !mp.source.JoinsOnIdentity() {
			// The new address inherits the old one's identity: recorded in
			// heap.identities, in this transaction, for the materializer.
			r, err := identity.Alias(mp.source.ID, mp.source.HeapAppID, ch.Old, ch.New, ch.At).Record(m.cfg.Topics.Identities)
			if err != nil {
				out = append(out, m.rawDead(mp.rec, err.Error()))
				continue
			}
			out = append(out, r)
		}
	}
	if err := <-identErr; err != nil {
		return nil, err
	}
	return append(out, m.encodeAll(ok)...), nil
}

// workers is how many goroutines map or encode n records: one per core,
// but not for batches too small to be worth the hand-off.
func (m *loop) workers(n int) int {
	if m.par > 0 {
		return min(m.par, max(1, n))
	}
	return max(1, min(runtime.GOMAXPROCS(0), n/256))
}

// chunks calls f on w contiguous ranges of [0, n) at once and waits.
func chunks(n, w int, f func(part, lo, hi int)) {
	if w <= 1 {
		f(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	for p := range w {
		lo, hi := p*n/w, (p+1)*n/w
		wg.Go(func() { f(p, lo, hi) })
	}
	wg.Wait()
}

// mapAll parses and maps recs on every core (the mapper is CPU-bound), and
// returns the raw dead letters and the mapped records, both in input order:
// the same output as mapping them one by one.
func (m *loop) mapAll(recs []*kgo.Record) ([]*kgo.Record, []mapped) {
	w := m.workers(len(recs))
	deads := make([][]*kgo.Record, w)
	oks := make([][]mapped, w)
	for len(m.evs) < w {
		m.evs = append(m.evs, nil)
	}
	chunks(len(recs), w, func(part, lo, hi int) {
		var dead []*kgo.Record
		ok := make([]mapped, 0, hi-lo) // mapped is large: grow it once
		// The chunk's events in one array, the last transaction's: its
		// events were encoded and cleared (transform) before this one maps.
		evs := m.evs[part][:0]
		if cap(evs) < hi-lo {
			evs = make([]events.Event, 0, (hi-lo)*5/4)
		}
		var lp lineageParser
		srcs := map[string]*config.Source{}
		for _, r := range recs[lo:hi] {
			rawID := kafka.HeaderBytes(r, kafka.HeaderSource)
			src, found := srcs[string(rawID)] // no copy to look up
			if !found {
				srcID := string(rawID)
				s, known := m.cfg.Sources.Get(srcID)
				if !known {
					dead = append(dead, m.rawDead(r, "unknown source "+srcID))
					continue
				}
				src = &s
				srcs[srcID] = src
			}
			lin := lp.lineage(r)
			res, grown, err := mapping.MapAppend(evs, src, lin.Kind, r.Value, lin)
			if err != nil {
				dead = append(dead, m.rawDead(r, err.Error()))
				continue
			}
			evs = grown
			ok = append(ok, mapped{rec: r, source: src, res: res})
		}
		m.evs[part] = evs
		deads[part], oks[part] = dead, ok
	})
	if w == 1 {
		return deads[0], oks[0]
	}
	return slices.Concat(deads...), slices.Concat(oks...)
}

// clearEvents drops the mapped events' references (to the polled records'
// bytes) once they are encoded, keeping their arrays for the next
// transaction.
func (m *loop) clearEvents() {
	for i, evs := range m.evs {
		clear(evs)
		m.evs[i] = evs[:0]
	}
}

// encodeAll encodes and routes the batch's events on every core, in order.
func (m *loop) encodeAll(batch []mapped) []*kgo.Record {
	at := make([]int, len(batch)+1) // batch[i]'s first event's index in out
	for i, mp := range batch {
		at[i+1] = at[i] + len(mp.res.Events)
	}
	out := make([]*kgo.Record, at[len(batch)])
	w := m.workers(len(batch))
	for len(m.arenas) < w {
		m.arenas = append(m.arenas, &arena{})
	}
	chunks(len(batch), w, func(part, lo, hi int) {
		a := m.arena(part, at[hi]-at[lo])
		for i := lo; i < hi; i++ {
			for j, e := range batch[i].res.Events {
				out[at[i]+j] = eventRecord(m.cfg.Topics, m.cfg.Codec, e, a)
			}
		}
	})
	return out
}

// resolveCampaigns stores the batch's campaign metadata, then fills titles.
func (m *loop) resolveCampaigns(ctx context.Context, batch []mapped) error {
	metas := map[string][]campaigns.Meta{}
	want := map[string][]string{}
	seen := map[[2]string]struct{}{} // source, campaign: a set, not a scan of want
	for _, mp := range batch {
		if c := mp.res.Campaign; c != nil {
			metas[mp.source.ID] = append(metas[mp.source.ID], *c)
		}
		for j := range mp.res.Events {
			// By pointer, not a copy of the whole event: resolveIdentities
			// sets Identity meanwhile.
			e := &mp.res.Events[j]
			if e.CampaignTitle == "" && e.CampaignID != "" {
				k := [2]string{mp.source.ID, e.CampaignID}
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					want[mp.source.ID] = append(want[mp.source.ID], e.CampaignID)
				}
			}
		}
	}
	for src, ms := range metas {
		if err := m.cfg.Campaigns.Remember(ctx, src, ms); err != nil {
			return fmt.Errorf("%w: %w", ErrDependency, err)
		}
	}
	if len(want) == 0 {
		return nil
	}
	titles, err := lookupEach(want, func(src string, ids []string) (map[string]string, error) {
		return m.cfg.Campaigns.Titles(ctx, src, ids)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDependency, err)
	}
	for i := range batch {
		t, found := titles[batch[i].source.ID]
		if !found {
			continue
		}
		for j := range batch[i].res.Events {
			e := &batch[i].res.Events[j]
			if e.CampaignTitle == "" {
				e.CampaignTitle = t[e.CampaignID]
			}
		}
	}
	return nil
}

// resolveIdentities looks up, per app, the identities of sources that join
// on a custom property, in one pipeline per app.
func (m *loop) resolveIdentities(ctx context.Context, batch []mapped) error {
	keys := map[string][]string{}
	seen := map[[2]string]struct{}{} // app, email key
	for _, mp := range batch {
		for j := range mp.res.Events {
			// By pointer, not a copy of the whole event: resolveCampaigns
			// sets CampaignTitle meanwhile.
			e := &mp.res.Events[j]
			if e.Identity == "" {
				k := [2]string{e.AppID, e.EmailKey}
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					keys[e.AppID] = append(keys[e.AppID], e.EmailKey)
				}
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	found, err := lookupEach(keys, func(app string, ks []string) (map[string]string, error) {
		return m.cfg.Identities.Resolve(ctx, app, ks)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDependency, err)
	}
	for i := range batch {
		for j := range batch[i].res.Events {
			e := &batch[i].res.Events[j]
			if e.Identity == "" {
				e.Identity = found[e.AppID][e.EmailKey]
			}
		}
	}
	return nil
}

// lookupEach runs one lookup (a Redis pipeline) per group at once, rather
// than one round trip after another, and returns the answers by group: the
// first error, if any.
func lookupEach(groups map[string][]string, lookup func(group string, keys []string) (map[string]string, error)) (map[string]map[string]string, error) {
	type answer struct {
		group string
		found map[string]string
		err   error
	}
	answers := make(chan answer, len(groups))
	for g, ks := range groups {
		go func() {
			f, err := lookup(g, ks)
			answers <- answer{g, f, err}
		}()
	}
	out := make(map[string]map[string]string, len(groups))
	var first error
	for range groups {
		a := <-answers
		if a.err != nil && first == nil {
			first = a.err
		}
		out[a.group] = a.found
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

// lineageParser reads records' lineage; a batch's records mostly share
// their received-at header (one ingress request, or close in time), so the
// last one parsed is kept rather than parsed again.
type lineageParser struct {
	raw       []byte
	at        time.Time
	requestID string
}

// kindOf is string(b) without a copy for the kinds ingress writes.
func kindOf(b []byte) string {
	for _, k := range [...]string{mailchimp.KindMandrillEvent, mailchimp.KindListWebhook, mailchimp.KindEmailActivity, mailchimp.KindCampaign} {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

func (lp *lineageParser) lineage(r *kgo.Record) events.Lineage {
	lin := events.Lineage{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	// One pass over the headers; the first of a key counts, as in
	// kafka.Header.
	var received []byte
	var seen [4]bool
	for _, h := range r.Headers {
		var i int
		switch h.Key {
		case kafka.HeaderReceivedAt:
			i = 0
		case kafka.HeaderKind:
			i = 1
		case kafka.HeaderRequestID:
			i = 2
		case kafka.HeaderReplaySalt:
			i = 3
		default:
			continue
		}
		if seen[i] {
			continue
		}
		seen[i] = true
		switch i {
		case 0:
			received = h.Value
		case 1:
			lin.Kind = kindOf(h.Value)
		case 2:
			// A Mandrill batch's events share their request id.
			if string(h.Value) != lp.requestID {
				lp.requestID = string(h.Value)
			}
			lin.RequestID = lp.requestID
		case 3:
			lin.Salt = string(h.Value)
		}
	}
	if lp.raw == nil || !bytes.Equal(received, lp.raw) {
		at, _ := time.Parse(time.RFC3339Nano, string(received))
		lp.raw, lp.at = append(lp.raw[:0], received...), at
	}
	at := lp.at
	if at.IsZero() {
		at = r.Timestamp
	}
	// Millisecond precision is what the schema keeps.
	lin.ReceivedAt = at.UTC().Truncate(time.Millisecond)
	return lin
}

// EventRecord routes e: heap.events when it has an identity Heap accepts,
// heap.events.pending while the identity is unknown, heap.events.dlq when the
// identity can never be sent. The materializer releases pending events
// through it too, so both paths route alike.
func EventRecord(t kafka.Topics, codec *events.Codec, e events.Event) *kgo.Record {
	return eventRecord(t, codec, e, nil)
}

// arena hands out a chunk's records, headers and bytes from a few large
// blocks instead of five allocations a record; what it hands out is never
// written again while any record in it may be read. A session reuses its
// arenas once a transaction's records were all flushed (reset): about a
// fifth of the mapper's allocated bytes otherwise.
type arena struct {
	recs   []kgo.Record
	hdrs   []kgo.RecordHeader
	buf    []byte
	blocks [][]byte // buf is blocks[block]
	block  int
}

// reset makes the arena's room for records free again. Caller: nothing
// handed out before is read again (the producer flushed it).
func (a *arena) reset(records int) {
	if cap(a.recs) < records {
		a.recs = make([]kgo.Record, 0, records)
	}
	if cap(a.hdrs) < 4*records {
		a.hdrs = make([]kgo.RecordHeader, 0, 4*records)
	}
	a.recs, a.hdrs, a.block = a.recs[:0], a.hdrs[:0], 0
	a.buf = nil
	if len(a.blocks) > 0 {
		a.buf = a.blocks[0][:0]
	}
}

// free returns room to append a record's bytes to; keep takes them.
func (a *arena) free() []byte {
	if a == nil {
		return nil
	}
	if cap(a.buf)-len(a.buf) < 1024 {
		if a.buf != nil {
			a.block++
		}
		if a.block == len(a.blocks) {
			a.blocks = append(a.blocks, make([]byte, 0, 64<<10))
		}
		a.buf = a.blocks[a.block][:0]
	}
	return a.buf[len(a.buf):len(a.buf)]
}

// keep marks b, appended to free(), as taken: b stayed in the block unless
// it outgrew the room, and then append gave it an array of its own.
func (a *arena) keep(b []byte) []byte {
	if a != nil && len(b) <= cap(a.buf)-len(a.buf) {
		a.buf = a.buf[:len(a.buf)+len(b)]
	}
	return b[:len(b):len(b)]
}

// record returns a record to fill.
func (a *arena) record() *kgo.Record {
	if a == nil || len(a.recs) == cap(a.recs) {
		return new(kgo.Record)
	}
	a.recs = a.recs[:len(a.recs)+1]
	return &a.recs[len(a.recs)-1]
}

// headers returns n empty headers with room for one more (a reason).
func (a *arena) headers(n int) []kgo.RecordHeader {
	if a == nil || cap(a.hdrs)-len(a.hdrs) < n+1 {
		return make([]kgo.RecordHeader, n, n+1)
	}
	at := len(a.hdrs)
	a.hdrs = a.hdrs[:at+n+1]
	return a.hdrs[at : at+n : at+n+1]
}

func eventRecord(t kafka.Topics, codec *events.Codec, e events.Event, a *arena) *kgo.Record {
	e.Time = e.Time.Truncate(time.Millisecond)
	val := a.keep(codec.AppendEncode(a.free(), e))
	// The three header values in one slice.
	vals := a.keep(append(append(append(a.free(), e.SourceID...), e.ID...), e.Name...))
	x, y := len(e.SourceID), len(e.SourceID)+len(e.ID)
	hdrs := a.headers(3)
	hdrs[0] = kgo.RecordHeader{Key: kafka.HeaderSource, Value: vals[:x:x]}
	hdrs[1] = kgo.RecordHeader{Key: kafka.HeaderEventID, Value: vals[x:y:y]}
	hdrs[2] = kgo.RecordHeader{Key: kafka.HeaderEventName, Value: vals[y:]}
	r := a.record()
	switch {
	case e.Identity == "":
		*r = kgo.Record{Topic: t.Pending, Key: a.keep(e.AppendPendingKey(a.free())), Value: val, Headers: hdrs}
	case utf8.RuneCountInString(e.Identity) > heap.MaxIdentityLen:
		hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(fmt.Sprintf("identity longer than %d characters", heap.MaxIdentityLen))})
		*r = kgo.Record{Topic: t.EventsDLQ, Key: a.keep(e.AppendPendingKey(a.free())), Value: val, Headers: hdrs}
	default:
		*r = kgo.Record{Topic: t.Events, Key: a.keep(e.AppendKey(a.free())), Value: val, Headers: hdrs}
	}
	return r
}

// tally counts a transaction's output records by what its metrics say, so
// a committed transaction adds each counter once, not once a record.
type tally struct {
	n     map[string]*tallied // by topic, source and kind or event name
	key   []byte
	total int
}

type tallied struct {
	topic, source, what string
	n                   int
}

func (t *tally) add(topics kafka.Topics, r *kgo.Record) {
	t.total++
	var source, what []byte
	switch r.Topic {
	case topics.RawDLQ:
		source, what = kafka.HeaderBytes(r, kafka.HeaderSource), kafka.HeaderBytes(r, kafka.HeaderKind)
	case topics.Events, topics.Pending, topics.EventsDLQ:
		source, what = kafka.HeaderBytes(r, kafka.HeaderSource), kafka.HeaderBytes(r, kafka.HeaderEventName)
	default:
		return
	}
	t.key = append(append(append(append(append(t.key[:0], r.Topic...), 0), source...), 0), what...)
	if e := t.n[string(t.key)]; e != nil { // a lookup by string(bytes) does not copy
		e.n++
		return
	}
	if t.n == nil {
		t.n = map[string]*tallied{}
	}
	t.n[string(t.key)] = &tallied{topic: r.Topic, source: string(source), what: string(what), n: 1}
}

// count adds a committed transaction's tally to the metrics.
func (m *loop) count(ctx context.Context, t tally) {
	for _, k := range t.n {
		n := k.n
		switch k.topic {
		case m.cfg.Topics.RawDLQ:
			m.cfg.Metrics.Add(metrics.MapperRawDead, float64(n), k.source, k.what)
			m.deadLettered(ctx, k.source, "unparseable", n)
		case m.cfg.Topics.Events:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "heap")
		case m.cfg.Topics.Pending:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "pending")
		case m.cfg.Topics.EventsDLQ:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "dead_lettered")
			m.deadLettered(ctx, k.source, "identity_too_long", n)
		}
	}
}

// deadLettered counts a dead letter for the status page; a count that Redis
// misses is not worth failing a committed batch.
func (m *loop) deadLettered(ctx context.Context, source, reason string, n int) {
	if m.cfg.Status == nil {
		return
	}
	if err := m.cfg.Status.DeadLettered(ctx, source, reason, n); err != nil {
		m.cfg.Log.Debug("status count failed", zap.Error(err))
	}
}

// rawDead dead-letters an input record as it came, with the reason.
func (m *loop) rawDead(r *kgo.Record, reason string) *kgo.Record {
	m.cfg.Log.Warn("dead-lettering raw record", zap.String("source", kafka.Header(r, kafka.HeaderSource)),
		zap.String("kind", kafka.Header(r, kafka.HeaderKind)), zap.String("reason", reason),
		zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	return kafka.DeadLetter(r, m.cfg.Topics.RawDLQ, reason)
}
