package mapper

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
)

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
