package mapper

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

// runSessions runs session i until ctx ends, re-creating it after failures.
func runSessions(ctx context.Context, cfg Config, i int) {
	retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 10 * time.Second,
		Notify: func(err error, wait time.Duration) {
			cfg.Log.Error("mapper session failed; re-creating", zap.Error(err), zap.Duration("in", wait))
		}}, func() error {
		err := runSession(ctx, cfg, i)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errClosed
		}
		return err
	})
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
		// A fetch is held decompressed until polled, so franz-go's default
		// (50 MiB, 1 MiB a partition) keeps a backlog's worth of heap
		// buffered. The process's sessions share 2 MiB, still about a
		// transaction's worth each; more raised peak memory past the target
		// (BENCHMARKS.md).
		kgo.FetchMaxBytes(int32(max(512<<10, (2<<20)/max(1, cfg.Sessions)))),
		// batch recycles each poll's records once its transaction ended.
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

// errClosed is a session's client closed under it.
var errClosed = errors.New("mapper: session closed")

// run maps batches until ctx ends or the session fails. A batch that
// aborts, because a dependency failed, is polled and mapped again after a
// backoff that grows while batches keep aborting and starts over once one
// commits.
func (m *loop) run(ctx context.Context) error {
	var records int // the aborted batch's, for the log
	policy := retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second,
		Notify: func(err error, wait time.Duration) {
			m.cfg.Log.Warn("batch aborted; will process again", zap.Error(err), zap.Int("records", records), zap.Duration("in", wait))
		}}
	for {
		err := retry.Do(ctx, policy, func() error {
			for {
				n, committed, err := m.batch(ctx)
				if err != nil {
					records = n
					return err
				}
				if committed {
					return nil
				}
			}
		})
		switch {
		case ctx.Err() != nil || errors.Is(err, errClosed):
			return nil
		case err != nil:
			return err
		}
	}
}

// batch polls and transacts one batch of n records. An error is the
// batch's abort, or, made retry.Permanent, the session's end: it failed,
// or it was closed (errClosed).
func (m *loop) batch(ctx context.Context) (n int, committed bool, err error) {
	fetches := m.sess.PollRecords(ctx, m.cfg.MaxPoll)
	if ctx.Err() != nil || fetches.IsClientClosed() {
		return 0, false, retry.Permanent(errClosed)
	}
	fetches.EachError(func(t string, p int32, err error) {
		m.cfg.Log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
	})
	recs := fetches.Records()
	if len(recs) == 0 {
		return 0, false, nil
	}
	if err := m.sess.Begin(); err != nil {
		return len(recs), false, retry.Permanent(fmt.Errorf("mapper: begin: %w", err))
	}
	tally, err := m.produce(ctx, recs)
	// End gets its own deadline, never the shutdown context: a cancelled
	// End can leave the outcome unknown.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	committed, endErr := m.sess.End(endCtx, kgo.TransactionEndTry(err == nil))
	cancel()
	if endErr != nil {
		return len(recs), false, retry.Permanent(fmt.Errorf("mapper: end transaction: %w", endErr))
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
		return len(recs), false, err
	case !committed:
		m.cfg.Metrics.Inc(metrics.MapperTxns, "rebalanced")
		m.cfg.Log.Info("transaction aborted by a rebalance; records will be processed again", zap.Int("records", len(recs)))
		return len(recs), false, nil
	default:
		m.cfg.Metrics.Inc(metrics.MapperTxns, "committed")
		m.count(ctx, tally)
		m.cfg.Log.Debug("batch committed", zap.Int("in", len(recs)), zap.Int("out", tally.total))
		return len(recs), true, nil
	}
}
