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
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

// maintain checks the cache marker often and sweeps now and then; one
// instance at a time does either, under a Redis lease.
func (m *Materializer) maintain(ctx context.Context) error {
	var lastSweep time.Time
	for {
		own, err := m.lease.Own(ctx, "materializer:"+m.cfg.Topics.Identities, 3*m.cfg.SweepInterval)
		if err != nil && ctx.Err() == nil {
			m.cfg.Log.Warn("sweep lease", zap.Error(err))
		}
		if own {
			ready, err := CacheReady(m.cfg.Redis, m.cfg.Topics)(ctx)
			switch {
			case err != nil:
				m.cfg.Log.Warn("cache check failed", zap.Error(err))
			case !ready:
				if err := m.Rebuild(ctx); err != nil && ctx.Err() == nil {
					m.cfg.Log.Error("cache rebuild failed; will retry", zap.Error(err))
				} else {
					lastSweep = time.Time{}
				}
			}
			if ready && time.Since(lastSweep) >= m.cfg.SweepInterval {
				if err := m.Sweep(ctx); err != nil && ctx.Err() == nil {
					m.cfg.Log.Warn("sweep failed; will retry", zap.Error(err))
				}
				lastSweep = time.Now()
			}
		}
		if !retry.Sleep(ctx, m.cfg.CheckInterval) {
			return nil
		}
	}
}

// Sweep looks at every address with waiting events: those whose identity is
// now known are released, those older than their source's pending_max_age
// are dead-lettered as unmatched.
func (m *Materializer) Sweep(ctx context.Context) error {
	apps := map[string]bool{}
	var minAge time.Duration
	for _, s := range m.cfg.Sources.All() {
		apps[s.HeapAppID] = true
		if minAge == 0 || s.PendingMaxAge < minAge {
			minAge = s.PendingMaxAge
		}
	}
	now := m.cfg.Now()
	for app := range apps {
		err := m.idx.Each(ctx, app, 500, func(ms []pending.Member) (bool, error) {
			keys := make([]string, len(ms))
			for i, mb := range ms {
				keys[i] = mb.EmailKey
			}
			found, err := m.ids.Resolve(ctx, app, keys)
			if err != nil {
				return false, err
			}
			if err := m.release(ctx, app, found); err != nil {
				return false, err
			}
			var old []string
			for _, mb := range ms {
				if _, ok := found[mb.EmailKey]; !ok && now.Sub(mb.Oldest) >= minAge {
					old = append(old, mb.EmailKey)
				}
			}
			return true, m.expire(ctx, app, old)
		})
		if err != nil {
			return fmt.Errorf("materializer: sweep %s: %w", app, err)
		}
	}
	return nil
}

// Rebuild writes every identity, campaign and pending event the compacted
// topics hold into Redis, then marks the cache ready. Writes are idempotent
// and identities already present are kept, so a rebuild over a live cache
// (or beside the live consumer after a flush) is harmless.
func (m *Materializer) Rebuild(ctx context.Context) error {
	start := time.Now()
	opts := append(slices.Clone(m.cfg.ClientOpts), kgo.SeedBrokers(m.cfg.Brokers...))
	ids, err := kafka.ReadTable(ctx, opts, m.cfg.Topics.Identities)
	if err != nil {
		return err
	}
	byApp := map[string]map[string]identity.Mapping{}
	for _, v := range ids {
		mp, err := identity.Decode(v)
		if err != nil {
			m.cfg.Log.Warn("skipping bad identity record", zap.Error(err))
			continue
		}
		if byApp[mp.App] == nil {
			byApp[mp.App] = map[string]identity.Mapping{}
		}
		byApp[mp.App][mp.EmailKey] = mp
	}
	nIDs := 0
	for app, all := range byApp {
		direct := map[string]string{}
		for k, mp := range all {
			if ident := resolveAlias(all, k); ident != "" {
				direct[k] = ident
			} else if mp.AliasOf != "" {
				if err := m.ids.AddAlias(ctx, app, mp.AliasOf, k); err != nil {
					return err
				}
			}
		}
		// The live consumer may have applied a newer mapping since the
		// table was read (after a flush, it runs beside the rebuild):
		// keep it.
		if err := m.ids.PutManyIfAbsent(ctx, app, direct); err != nil {
			return err
		}
		nIDs += len(direct)
	}
	camps, err := kafka.ReadTable(ctx, opts, m.cfg.Topics.Campaigns)
	if err != nil {
		return err
	}
	for k, v := range camps {
		src, meta, err := campaigns.Decode([]byte(k), v)
		if err != nil {
			m.cfg.Log.Warn("skipping bad campaign record", zap.Error(err))
			continue
		}
		if err := m.camps.Remember(ctx, src, []campaigns.Meta{meta}); err != nil {
			return err
		}
	}
	pend, err := kafka.ReadTableRecords(ctx, opts, m.cfg.Topics.Pending)
	if err != nil {
		return err
	}
	for _, r := range pend {
		if _, _, _, err := m.index(ctx, r); err != nil {
			return err
		}
	}
	if err := m.cfg.Redis.Set(ctx, readyKey(m.cfg.Topics), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return fmt.Errorf("materializer: cache marker: %w", err)
	}
	m.cfg.Log.Info("Redis cache rebuilt from Kafka", zap.Int("identities", nIDs), zap.Int("campaigns", len(camps)),
		zap.Int("pending", len(pend)), zap.Duration("took", time.Since(start)))
	return nil
}

// resolveAlias follows alias_of links within the table, a few hops at most.
func resolveAlias(all map[string]identity.Mapping, k string) string {
	for hop := 0; hop < 5; hop++ {
		mp, ok := all[k]
		if !ok {
			return ""
		}
		if mp.Identity != "" {
			return mp.Identity
		}
		k = mp.AliasOf
	}
	return ""
}
