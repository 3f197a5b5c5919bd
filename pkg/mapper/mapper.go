// Package mapper is the transactional consume-transform-produce loop from
// mailchimp.raw to heap.events.
//
// The contract: the mapper reads mailchimp.raw read_committed, and each
// poll is one Kafka transaction that holds all its output and its input
// offsets. The output is the events (heap.events, heap.events.pending or
// heap.events.dlq, as package events/route says), the raw dead letters
// (mailchimp.dlq), campaign metadata (mailchimp.campaigns) and address
// changes (heap.identities). A batch whose transaction does not commit (a
// dependency failed, a rebalance) is read again, so every raw record's
// output is written once.
//
// Its parts: session.go runs the sessions and the poll-transact loop,
// txn.go produces a batch in its transaction, transform.go parses, maps
// (package mapping, pure) and encodes on every core, resolve.go fills
// campaign titles and identities from Redis, lineage.go reads the raw
// records' headers, arena.go holds a transaction's records, and metrics.go
// counts what committed.
package mapper

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
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
	Sources    *source.Sources
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
// poll, so larger polls spread them (BENCHMARKS.md has the measurements).
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
