package materializer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

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
	policy := m.redisRetry("applying to Redis failed; will retry")
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
		if len(recs) > 0 {
			// Until it is applied or ctx ends: Redis failing says nothing
			// about the records.
			if err := retry.Do(ctx, policy, func() error { return m.apply(ctx, recs) }); err != nil {
				cl.AllowRebalance()
				return nil
			}
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

// redisRetry is how the materializer waits out Redis: 0.5 s, growing to
// 5 s, each failure logged as msg.
func (m *Materializer) redisRetry(msg string) retry.Policy {
	return retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second,
		Notify: func(err error, wait time.Duration) {
			m.cfg.Log.Warn(msg, zap.Error(err), zap.Duration("in", wait))
		}}
}
