// Package materializer keeps the Redis cache in step with the compacted
// topics that are the truth (heap.identities, heap.events.pending,
// mailchimp.campaigns), releases pending events when their identity arrives,
// dead-letters those that waited too long, and rebuilds the cache when Redis
// lost it.
//
// Its parts: consume.go applies the topics to Redis, bind.go an identity
// mapping and a pending event, release.go and transact.go move pending
// events out (released to heap.events as package events/route says, or
// dead-lettered) with produce.go's transactions, sweep.go looks through
// every waiting address and rebuilds the cache, pendingkey.go reads the
// pending topic's keys, and metrics.go keeps the status page's counts.
package materializer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
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
	Sources       *source.Sources
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
