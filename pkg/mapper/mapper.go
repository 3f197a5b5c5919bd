// Package mapper is the transactional consume-transform-produce loop from
// mailchimp.raw to heap.events: parse, map, resolve campaign titles and
// identities through Redis, encode Avro, produce, and commit the input
// offsets in the same Kafka transaction.
package mapper

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	MaxPoll    int // records per transaction; default 2000
	Metrics    *metrics.Pipeline
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

// Run consumes until ctx ends. A session that fails is closed and re-created.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Group == "" {
		cfg.Group = "mapper"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 2000
	}
	if cfg.TransactionID == "" {
		return errors.New("mapper: TransactionID is required")
	}
	bo := backoff.NewExponentialBackOff()
	bo.MaxInterval = 10 * time.Second
	for {
		err := runSession(ctx, cfg)
		if ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		cfg.Log.Error("mapper session failed; re-creating", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func runSession(ctx context.Context, cfg Config) error {
	opts := append(slices.Clone(cfg.ClientOpts),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topics.Raw),
		kgo.TransactionalID(cfg.TransactionID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionTimeout(60*time.Second),
		// A fetch is held decompressed until polled: at the default 50 MiB
		// (1 MiB a partition) a backlog of compressed JSON kept ~60 MB of
		// heap buffered. 2 MiB still holds several transactions' worth.
		kgo.FetchMaxBytes(2<<20),
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
		out, err := m.transform(ctx, recs)
		if err == nil {
			promise := kgo.AbortingFirstErrPromise(m.sess.Client())
			for _, r := range out {
				m.sess.Produce(ctx, r, promise.Promise())
			}
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
			for _, r := range out {
				m.count(ctx, r)
			}
			bo.Reset()
			m.cfg.Log.Debug("batch committed", zap.Int("in", len(recs)), zap.Int("out", len(out)))
		}
	}
}

// mapped is one input record's outcome.
type mapped struct {
	rec    *kgo.Record
	source config.Source
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
	var out []*kgo.Record
	ok := make([]mapped, 0, len(recs)) // mapped is large: grow it once
	for _, r := range recs {
		srcID := kafka.Header(r, kafka.HeaderSource)
		src, found := m.cfg.Sources.Get(srcID)
		if !found {
			out = append(out, m.rawDead(r, "unknown source "+srcID))
			continue
		}
		res, err := mapping.Map(src, kafka.Header(r, kafka.HeaderKind), r.Value, lineage(r))
		if err != nil {
			out = append(out, m.rawDead(r, err.Error()))
			continue
		}
		ok = append(ok, mapped{rec: r, source: src, res: res})
	}
	if err := m.resolveCampaigns(ctx, ok); err != nil {
		return nil, err
	}
	for _, mp := range ok {
		if c := mp.res.Campaign; c != nil {
			// Kafka is the truth, Redis the cache: the metadata goes to the
			// compacted topic in the same transaction.
			r, err := campaigns.Record(m.cfg.Topics.Campaigns, mp.source.ID, *c)
			if err != nil {
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
	if err := m.resolveIdentities(ctx, ok); err != nil {
		return nil, err
	}
	for _, mp := range ok {
		for _, e := range mp.res.Events {
			r, err := m.eventRecord(e)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// resolveCampaigns stores the batch's campaign metadata, then fills titles.
func (m *loop) resolveCampaigns(ctx context.Context, batch []mapped) error {
	metas := map[string][]campaigns.Meta{}
	want := map[string][]string{}
	for _, mp := range batch {
		if c := mp.res.Campaign; c != nil {
			metas[mp.source.ID] = append(metas[mp.source.ID], *c)
		}
		for _, e := range mp.res.Events {
			if e.CampaignTitle == "" && e.CampaignID != "" && !slices.Contains(want[mp.source.ID], e.CampaignID) {
				want[mp.source.ID] = append(want[mp.source.ID], e.CampaignID)
			}
		}
	}
	for src, ms := range metas {
		if err := m.cfg.Campaigns.Remember(ctx, src, ms); err != nil {
			return fmt.Errorf("%w: %w", ErrDependency, err)
		}
	}
	for src, ids := range want {
		titles, err := m.cfg.Campaigns.Titles(ctx, src, ids)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDependency, err)
		}
		for i := range batch {
			if batch[i].source.ID != src {
				continue
			}
			for j := range batch[i].res.Events {
				e := &batch[i].res.Events[j]
				if e.CampaignTitle == "" {
					e.CampaignTitle = titles[e.CampaignID]
				}
			}
		}
	}
	return nil
}

// resolveIdentities looks up, per app, the identities of sources that join
// on a custom property, in one pipeline per app.
func (m *loop) resolveIdentities(ctx context.Context, batch []mapped) error {
	keys := map[string][]string{}
	for _, mp := range batch {
		for _, e := range mp.res.Events {
			if e.Identity == "" && !slices.Contains(keys[e.AppID], e.EmailKey) {
				keys[e.AppID] = append(keys[e.AppID], e.EmailKey)
			}
		}
	}
	for app, ks := range keys {
		found, err := m.cfg.Identities.Resolve(ctx, app, ks)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDependency, err)
		}
		for i := range batch {
			for j := range batch[i].res.Events {
				e := &batch[i].res.Events[j]
				if e.AppID == app && e.Identity == "" {
					e.Identity = found[e.EmailKey]
				}
			}
		}
	}
	return nil
}

func lineage(r *kgo.Record) events.Lineage {
	at, _ := time.Parse(time.RFC3339Nano, kafka.Header(r, kafka.HeaderReceivedAt))
	if at.IsZero() {
		at = r.Timestamp
	}
	return events.Lineage{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Kind:      kafka.Header(r, kafka.HeaderKind),
		RequestID: kafka.Header(r, kafka.HeaderRequestID),
		// Millisecond precision is what the schema keeps.
		ReceivedAt: at.UTC().Truncate(time.Millisecond),
		Salt:       kafka.Header(r, kafka.HeaderReplaySalt),
	}
}

// eventRecord routes e (see EventRecord).
func (m *loop) eventRecord(e events.Event) (*kgo.Record, error) {
	return EventRecord(m.cfg.Topics, m.cfg.Codec, e)
}

// EventRecord routes e: heap.events when it has an identity Heap accepts,
// heap.events.pending while the identity is unknown, heap.events.dlq when the
// identity can never be sent. The materializer releases pending events
// through it too, so both paths route alike.
func EventRecord(t kafka.Topics, codec *events.Codec, e events.Event) (*kgo.Record, error) {
	e.Time = e.Time.Truncate(time.Millisecond)
	val, err := codec.Encode(e)
	if err != nil {
		// The schema and the mapping disagree: a bug, not a bad record.
		return nil, fmt.Errorf("mapper: %w", err)
	}
	hdrs := []kgo.RecordHeader{
		{Key: kafka.HeaderSource, Value: []byte(e.SourceID)},
		{Key: kafka.HeaderEventID, Value: []byte(e.ID)},
		{Key: kafka.HeaderEventName, Value: []byte(e.Name)},
	}
	switch {
	case e.Identity == "":
		return &kgo.Record{Topic: t.Pending, Key: e.PendingKey(), Value: val, Headers: hdrs}, nil
	case utf8.RuneCountInString(e.Identity) > heap.MaxIdentityLen:
		hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(fmt.Sprintf("identity longer than %d characters", heap.MaxIdentityLen))})
		return &kgo.Record{Topic: t.EventsDLQ, Key: e.PendingKey(), Value: val, Headers: hdrs}, nil
	default:
		return &kgo.Record{Topic: t.Events, Key: e.Key(), Value: val, Headers: hdrs}, nil
	}
}

// count records one committed output record.
func (m *loop) count(ctx context.Context, r *kgo.Record) {
	source := kafka.Header(r, kafka.HeaderSource)
	switch r.Topic {
	case m.cfg.Topics.RawDLQ:
		m.cfg.Metrics.Inc(metrics.MapperRawDead, source, kafka.Header(r, kafka.HeaderKind))
		m.deadLettered(ctx, source, "unparseable")
	case m.cfg.Topics.Events:
		m.cfg.Metrics.Inc(metrics.MapperEvents, source, kafka.Header(r, kafka.HeaderEventName), "heap")
	case m.cfg.Topics.Pending:
		m.cfg.Metrics.Inc(metrics.MapperEvents, source, kafka.Header(r, kafka.HeaderEventName), "pending")
	case m.cfg.Topics.EventsDLQ:
		m.cfg.Metrics.Inc(metrics.MapperEvents, source, kafka.Header(r, kafka.HeaderEventName), "dead_lettered")
		m.deadLettered(ctx, source, "identity_too_long")
	}
}

// deadLettered counts a dead letter for the status page; a count that Redis
// misses is not worth failing a committed batch.
func (m *loop) deadLettered(ctx context.Context, source, reason string) {
	if m.cfg.Status == nil {
		return
	}
	if err := m.cfg.Status.DeadLettered(ctx, source, reason, 1); err != nil {
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
