// Package materializer keeps the Redis cache in step with the compacted
// topics that are the truth (heap.identities, heap.events.pending,
// mailchimp.campaigns), releases pending events when their identity arrives,
// dead-letters those that waited too long, and rebuilds the cache when Redis
// lost it.
package materializer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
)

// HeaderPendingSince restarts an event's wait (set by a redrive): its age
// counts from here instead of from its receipt.
const HeaderPendingSince = "pending-since"

// Status counts what a source's status page shows.
type Status interface {
	AddPending(ctx context.Context, source string, delta int64) error
	DeadLettered(ctx context.Context, source, reason string, n int) error
}

// Config is what the materializer needs.
type Config struct {
	Brokers       []string
	Topics        kafka.Topics
	Group         string // default "materializer"
	TransactionID string // releases are transactions: events out, tombstones in
	Holder        string // this instance, for the sweep lease
	Sources       *config.Sources
	Codec         *events.Codec
	Redis         redis.UniversalClient
	Status        Status // optional
	Metrics       *metrics.Pipeline
	Log           *zap.Logger
	// SweepInterval is how often one instance looks through every pending
	// address for an identity that arrived unseen and for expired events;
	// default 30 s.
	SweepInterval time.Duration
	// CheckInterval is how often the cache's presence is checked; default 2 s.
	CheckInterval time.Duration
	// InstanceID, when set, makes the consumer a static group member.
	InstanceID string
	ClientOpts []kgo.Opt // every client's
	// ConsumerOpts are added to the long-lived consumer only (client metrics
	// hooks register once per client).
	ConsumerOpts []kgo.Opt
	Now          func() time.Time
}

// Materializer is one instance; several share the work as a group.
type Materializer struct {
	cfg   Config
	ids   *identity.Store
	camps *campaigns.Store
	idx   *pending.Index
	lease *lease.Leases

	mu   sync.Mutex // one release transaction at a time
	prod *kgo.Client
}

// New builds a Materializer and its transactional producer.
func New(cfg Config) (*Materializer, error) {
	if cfg.Group == "" {
		cfg.Group = "materializer"
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 30 * time.Second
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TransactionID == "" {
		return nil, errors.New("materializer: TransactionID is required")
	}
	m := &Materializer{cfg: cfg, ids: identity.NewStore(cfg.Redis), camps: campaigns.NewStore(cfg.Redis),
		idx: pending.New(cfg.Redis), lease: lease.New(cfg.Redis, cfg.Holder)}
	if err := m.newProducer(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Materializer) newProducer() error {
	if m.prod != nil {
		m.prod.Close()
	}
	cl, err := kgo.NewClient(append(slices.Clone(m.cfg.ClientOpts),
		kgo.SeedBrokers(m.cfg.Brokers...),
		kgo.TransactionalID(m.cfg.TransactionID),
		kgo.TransactionTimeout(60*time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("materializer: producer: %w", err)
	}
	m.prod = cl
	return nil
}

// Close releases the producer.
func (m *Materializer) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prod.Close()
}

func readyKey(t kafka.Topics) string { return "mh:cache:ready:" + t.Identities }

// CacheReady reports whether the Redis cache holds what the topics hold: a
// flushed Redis has lost the marker, and the mapper waits for the rebuild.
func CacheReady(rdb redis.UniversalClient, t kafka.Topics) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		n, err := rdb.Exists(ctx, readyKey(t)).Result()
		if err != nil {
			return false, fmt.Errorf("materializer: cache marker: %w", err)
		}
		return n == 1, nil
	}
}

// Run consumes and sweeps until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	m, err := New(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	// A consumer that cannot start ends the maintain loop too, so Run
	// returns its error instead of waiting for ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- m.maintain(ctx) }()
	err = m.consume(ctx)
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// consume applies the three topics to Redis, committing offsets only after.
func (m *Materializer) consume(ctx context.Context) error {
	opts := append(append(slices.Clone(m.cfg.ClientOpts), m.cfg.ConsumerOpts...),
		kgo.SeedBrokers(m.cfg.Brokers...),
		kgo.ConsumeTopics(m.cfg.Topics.Identities, m.cfg.Topics.Pending, m.cfg.Topics.Campaigns),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Only records marked after they were applied are committed, by us
		// or on revoke: a polled batch that failed to apply (Redis down)
		// or was dropped at shutdown must not be committed when Close
		// leaves the group, or its identities and pending events would
		// never reach Redis.
		kgo.AutoCommitMarks(),
		// Revocation waits for the batch in hand, so what is committed on
		// revoke has been applied.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				m.cfg.Log.Warn("commit on revoke failed", zap.Error(err))
			}
		}),
	)
	cl, err := kgo.NewClient(append(opts, kafka.GroupOpts(m.cfg.Group, m.cfg.InstanceID)...)...)
	if err != nil {
		return fmt.Errorf("materializer: consumer: %w", err)
	}
	defer cl.Close()
	bo := backoff.NewExponentialBackOff()
	bo.MaxInterval = 5 * time.Second
	for {
		fs := cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil || fs.IsClientClosed() {
			cl.AllowRebalance()
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			m.cfg.Log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		recs := fs.Records()
		for len(recs) > 0 {
			err := m.apply(ctx, recs)
			if err == nil {
				bo.Reset()
				break
			}
			wait := bo.NextBackOff()
			m.cfg.Log.Warn("applying to Redis failed; will retry", zap.Error(err), zap.Duration("in", wait))
			if !sleep(ctx, wait) {
				cl.AllowRebalance()
				return nil
			}
		}
		if len(recs) > 0 {
			cl.MarkCommitRecords(recs...)
			if err := cl.CommitMarkedOffsets(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Log.Warn("commit failed; records will be applied again", zap.Error(err))
			}
		}
		cl.AllowRebalance()
	}
}

// apply writes a batch to Redis in order, then releases what became
// releasable: pending events whose identity is known, and addresses whose
// identity just arrived. Every step is idempotent, so a retried batch is safe.
func (m *Materializer) apply(ctx context.Context, recs []*kgo.Record) error {
	arrived := map[string]map[string]string{} // app -> email key -> identity
	waiting := map[string][]string{}          // app -> email keys just indexed
	for _, r := range recs {
		switch r.Topic {
		case m.cfg.Topics.Campaigns:
			if r.Value == nil {
				continue
			}
			src, meta, err := campaigns.Decode(r.Key, r.Value)
			if err != nil {
				m.cfg.Log.Warn("skipping bad campaign record", zap.Error(err), zap.Int64("offset", r.Offset))
				continue
			}
			if err := m.camps.Remember(ctx, src, []campaigns.Meta{meta}); err != nil {
				return err
			}
		case m.cfg.Topics.Identities:
			if r.Value == nil {
				continue
			}
			mp, err := identity.Decode(r.Value)
			if err != nil {
				m.cfg.Log.Warn("skipping bad identity record", zap.Error(err), zap.Int64("offset", r.Offset))
				continue
			}
			bound, err := m.bind(ctx, mp)
			if err != nil {
				return err
			}
			for k, v := range bound {
				if arrived[mp.App] == nil {
					arrived[mp.App] = map[string]string{}
				}
				arrived[mp.App][k] = v
			}
		case m.cfg.Topics.Pending:
			app, ek, added, err := m.index(ctx, r)
			if err != nil {
				return err
			}
			if added {
				waiting[app] = append(waiting[app], ek)
			}
		}
	}
	for app, byKey := range arrived {
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		has, err := m.idx.Has(ctx, app, keys)
		if err != nil {
			return err
		}
		for k := range byKey {
			if !has[k] {
				delete(byKey, k)
			}
		}
		if err := m.release(ctx, app, byKey); err != nil {
			return err
		}
	}
	for app, keys := range waiting {
		found, err := m.ids.Resolve(ctx, app, keys)
		if err != nil {
			return err
		}
		if err := m.release(ctx, app, found); err != nil {
			return err
		}
	}
	return nil
}

// bind applies one heap.identities mapping and returns every address that
// now has an identity: the address itself and those inheriting from it.
func (m *Materializer) bind(ctx context.Context, mp identity.Mapping) (map[string]string, error) {
	ident := mp.Identity
	if mp.AliasOf != "" {
		found, err := m.ids.Resolve(ctx, mp.App, []string{mp.AliasOf})
		if err != nil {
			return nil, err
		}
		if ident = found[mp.AliasOf]; ident == "" {
			// The old address's identity is not known yet: its arrival
			// carries over then.
			return nil, m.ids.AddAlias(ctx, mp.App, mp.AliasOf, mp.EmailKey)
		}
	}
	bound := map[string]string{mp.EmailKey: ident}
	// Follow aliases a few hops: an address changed twice inherits too.
	next := []string{mp.EmailKey}
	for hop := 0; hop < 4 && len(next) > 0; hop++ {
		var more []string
		for _, k := range next {
			as, err := m.ids.Aliases(ctx, mp.App, k)
			if err != nil {
				return nil, err
			}
			for _, a := range as {
				if _, seen := bound[a]; !seen {
					bound[a] = ident
					more = append(more, a)
				}
			}
		}
		next = more
	}
	if err := m.ids.PutMany(ctx, mp.App, bound); err != nil {
		return nil, err
	}
	return bound, nil
}

// index applies one heap.events.pending record: an event to the index, a
// tombstone out of it.
func (m *Materializer) index(ctx context.Context, r *kgo.Record) (app, emailKey string, added bool, err error) {
	if r.Value == nil {
		app, ek, id, ok := splitPendingKey(r.Key)
		if !ok {
			return "", "", false, nil
		}
		gone, err := m.idx.Remove(ctx, app, ek, id)
		if err != nil {
			return "", "", false, err
		}
		m.countRemoved(ctx, gone, "")
		return app, ek, false, nil
	}
	if err := m.cfg.Codec.Learn(ctx, r.Value); err != nil {
		return "", "", false, m.undecodable(ctx, r, err) // the registry is unavailable: retried
	}
	e, err := m.cfg.Codec.Decode(r.Value)
	if err != nil {
		return "", "", false, m.undecodable(ctx, r, err)
	}
	added, err = m.idx.Add(ctx, e.AppID, e.EmailKey, pending.Entry{EventID: e.ID, Since: since(r, e), Value: r.Value})
	if err != nil {
		return "", "", false, err
	}
	if added {
		m.addPending(ctx, e.SourceID, 1)
	}
	return e.AppID, e.EmailKey, added, nil
}

// undecodable moves a heap.events.pending record that no schema this build
// reads decodes (an unknown fingerprint, a registry id whose schema cannot
// be read as the current one, damaged bytes) to heap.events.dlq with the
// reason, and tombstones it in pending, in one transaction, as expire
// moves an event: it is not dropped, and once a build reads its schema,
// `ctl redrive` sends it back. A registry that cannot be asked is not the
// record's fault: the error is returned and the batch retried.
func (m *Materializer) undecodable(ctx context.Context, r *kgo.Record, decodeErr error) error {
	if errors.Is(decodeErr, events.ErrSchemaUnavailable) {
		return fmt.Errorf("materializer: pending event at offset %d: %w", r.Offset, decodeErr)
	}
	reason := "undecodable: " + decodeErr.Error()
	m.cfg.Log.Warn("dead-lettering undecodable pending event", zap.String("reason", reason),
		zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	recs := []*kgo.Record{kafka.DeadLetter(r, m.cfg.Topics.EventsDLQ, reason)}
	if len(r.Key) > 0 { // a compacted topic's records have keys; a tombstone needs one
		recs = append(recs, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: r.Key})
	}
	m.mu.Lock()
	err := m.produce(ctx, recs)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if src := kafka.Header(r, kafka.HeaderSource); src != "" && m.cfg.Status != nil {
		if err := m.cfg.Status.DeadLettered(ctx, src, reasonUndecodable, 1); err != nil {
			m.cfg.Log.Debug("status count failed", zap.Error(err))
		}
	}
	return nil
}

// reasonUndecodable is the status page's class of a pending event that
// does not decode.
const reasonUndecodable = "unparseable"

func since(r *kgo.Record, e events.Event) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, kafka.Header(r, HeaderPendingSince)); err == nil {
		return t
	}
	if !e.Lineage.ReceivedAt.IsZero() {
		return e.Lineage.ReceivedAt
	}
	return r.Timestamp
}

// pendingKey is events.Event.PendingKey's layout, from its parts.
func pendingKey(app, emailKey, id string) []byte {
	return events.Event{AppID: app, EmailKey: emailKey, ID: id}.PendingKey()
}

func splitPendingKey(k []byte) (app, emailKey, id string, ok bool) {
	var parts [3]string
	n := 0
	start := 0
	for i, b := range k {
		if b == 0 {
			if n == 2 {
				return "", "", "", false
			}
			parts[n] = string(k[start:i])
			n++
			start = i + 1
		}
	}
	if n != 2 {
		return "", "", "", false
	}
	parts[2] = string(k[start:])
	return parts[0], parts[1], parts[2], true
}

// release sends the waiting events of each address with its identity to
// heap.events, and tombstones them in heap.events.pending, in one
// transaction; the index forgets them once it committed.
func (m *Materializer) release(ctx context.Context, app string, idents map[string]string) error {
	if len(idents) == 0 {
		return nil
	}
	return m.transact(ctx, app, idents, func(e events.Event, en pending.Entry) (*kgo.Record, string, error) {
		e.Identity = idents[e.EmailKey]
		r := mapper.EventRecord(m.cfg.Topics, m.cfg.Codec, e)
		if r.Topic == m.cfg.Topics.EventsDLQ {
			return r, "identity_too_long", nil
		}
		return r, "", nil
	})
}

// expire dead-letters the events of addresses that waited longer than their
// source's pending_max_age.
func (m *Materializer) expire(ctx context.Context, app string, emailKeys []string) error {
	now := m.cfg.Now()
	keys := map[string]string{}
	for _, k := range emailKeys {
		keys[k] = ""
	}
	return m.transact(ctx, app, keys, func(e events.Event, en pending.Entry) (*kgo.Record, string, error) {
		maxAge := config.DefaultPendingMaxAge
		if src, ok := m.cfg.Sources.Get(e.SourceID); ok {
			maxAge = src.PendingMaxAge
		}
		if now.Sub(en.Since) < maxAge {
			return nil, "", nil
		}
		reason := fmt.Sprintf("unmatched: no Heap identity for this email after %s", maxAge)
		return &kgo.Record{Topic: m.cfg.Topics.EventsDLQ, Key: e.PendingKey(), Value: en.Value, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(e.SourceID)},
			{Key: kafka.HeaderEventID, Value: []byte(e.ID)},
			{Key: kafka.HeaderEventName, Value: []byte(e.Name)},
			{Key: kafka.HeaderReason, Value: []byte(reason)},
			{Key: kafka.HeaderOrigin, Value: []byte(m.cfg.Topics.Pending)},
		}}, "unmatched", nil
	})
}

// transact moves the chosen waiting events of the given addresses out of
// pending: route returns where an event goes (nil: it stays) and the
// dead-letter reason class when it is a dead letter.
func (m *Materializer) transact(ctx context.Context, app string, keys map[string]string,
	route func(events.Event, pending.Entry) (*kgo.Record, string, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*kgo.Record
	moved := map[string][]string{}      // email key -> event ids
	dead := map[[2]string]int{}         // source, reason -> count
	sent := map[string]map[string]int{} // source -> event name -> count
	for k := range keys {
		entries, err := m.idx.Get(ctx, app, k)
		if err != nil {
			return err
		}
		for _, en := range entries {
			e, err := m.cfg.Codec.Decode(en.Value)
			if errors.Is(err, events.ErrSchemaUnavailable) {
				m.cfg.Log.Warn("pending entry left in place while its schema cannot be fetched", zap.Error(err))
				continue
			}
			if err != nil {
				// Indexed by a build that read its schema (before a
				// rollback, say): moved like a record index cannot decode.
				key := pendingKey(app, k, en.EventID)
				reason := "undecodable: " + err.Error()
				m.cfg.Log.Warn("dead-lettering undecodable pending entry", zap.String("reason", reason))
				out = append(out, &kgo.Record{Topic: m.cfg.Topics.EventsDLQ, Key: key, Value: en.Value, Headers: []kgo.RecordHeader{
					{Key: kafka.HeaderEventID, Value: []byte(en.EventID)},
					{Key: kafka.HeaderReason, Value: []byte(reason)},
					{Key: kafka.HeaderOrigin, Value: []byte(m.cfg.Topics.Pending)},
				}}, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: key})
				moved[k] = append(moved[k], en.EventID)
				continue
			}
			r, reason, err := route(e, en)
			if err != nil {
				return err
			}
			if r == nil {
				continue
			}
			out = append(out, r, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: e.PendingKey()})
			moved[k] = append(moved[k], en.EventID)
			if reason != "" {
				dead[[2]string{e.SourceID, reason}]++
			} else {
				if sent[e.SourceID] == nil {
					sent[e.SourceID] = map[string]int{}
				}
				sent[e.SourceID][e.Name]++
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	if err := m.produce(ctx, out); err != nil {
		return err
	}
	for k, ids := range moved {
		gone, err := m.forget(ctx, app, k, ids)
		if err != nil {
			return err
		}
		m.countRemoved(ctx, gone, "")
	}
	for sr, n := range dead {
		if m.cfg.Status != nil {
			if err := m.cfg.Status.DeadLettered(ctx, sr[0], sr[1], n); err != nil {
				m.cfg.Log.Debug("status count failed", zap.Error(err))
			}
		}
	}
	for src, byName := range sent {
		for name, n := range byName {
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), src, name, "released")
		}
	}
	m.cfg.Log.Info("pending events moved", zap.String("app", app), zap.Int("events", len(out)/2), zap.Int("addresses", len(moved)))
	return nil
}

// forget removes released or expired events from the index. Their events and
// tombstones are committed, so it keeps trying while Redis fails: an entry
// left behind would be sent a second time by the retried batch or the next
// sweep, before its tombstone is consumed.
func (m *Materializer) forget(ctx context.Context, app, emailKey string, ids []string) ([]pending.Entry, error) {
	bo := backoff.NewExponentialBackOff()
	bo.MaxInterval = 5 * time.Second
	for {
		gone, err := m.idx.Remove(ctx, app, emailKey, ids...)
		if err == nil {
			return gone, nil
		}
		wait := bo.NextBackOff()
		m.cfg.Log.Warn("removing moved events from the index failed; will retry", zap.Error(err), zap.Duration("in", wait))
		if !sleep(ctx, wait) {
			// Shutting down: the committed tombstones remove them when
			// consumed.
			return nil, err
		}
	}
}

// produce writes recs in one transaction; a failed transaction re-creates
// the producer, since its state is then unknown.
func (m *Materializer) produce(ctx context.Context, recs []*kgo.Record) error {
	if err := m.prod.BeginTransaction(); err != nil {
		m.newProducer()
		return fmt.Errorf("materializer: begin: %w", err)
	}
	var mu sync.Mutex
	var first error
	for _, r := range recs {
		m.prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	flushErr := m.prod.Flush(ctx)
	mu.Lock()
	if first == nil {
		first = flushErr
	}
	failed := first
	mu.Unlock()
	commit := kgo.TryCommit
	if failed != nil {
		commit = kgo.TryAbort
		// Waits for records in flight, so no promise runs after this.
		m.prod.AbortBufferedRecords(context.WithoutCancel(ctx))
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := m.prod.EndTransaction(endCtx, commit); err != nil {
		m.newProducer()
		return fmt.Errorf("materializer: end transaction: %w", err)
	}
	if failed != nil {
		return fmt.Errorf("materializer: produce: %w", failed)
	}
	return nil
}

// countRemoved lowers the pending counts of the entries removed.
func (m *Materializer) countRemoved(ctx context.Context, gone []pending.Entry, _ string) {
	per := map[string]int64{}
	for _, en := range gone {
		if e, err := m.cfg.Codec.Decode(en.Value); err == nil {
			per[e.SourceID]++
		}
	}
	for src, n := range per {
		m.addPending(ctx, src, -n)
	}
}

func (m *Materializer) addPending(ctx context.Context, source string, n int64) {
	if m.cfg.Status == nil {
		return
	}
	if err := m.cfg.Status.AddPending(ctx, source, n); err != nil {
		m.cfg.Log.Debug("status count failed", zap.Error(err))
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
