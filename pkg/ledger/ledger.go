// Package ledger remembers, in Redis and for a while, which events Heap
// already accepted, so an emitter that takes over a partition after a
// rebalance or a restart does not send them again. Heap's idempotency_key
// stays the last guard: the ledger only saves requests.
package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps delivered event ids under mh:delivered:{app}:{event id}.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewStore returns a ledger whose entries live for ttl.
func NewStore(rdb redis.UniversalClient, ttl time.Duration) *Store {
	return &Store{rdb: rdb, ttl: ttl}
}

// The hash tag keeps one app's keys in one cluster slot, so MGET works on Redis Cluster.
func key(app, id string) string { return "mh:delivered:{" + app + "}:" + id }

// Delivered returns which of ids Heap already accepted, in one round trip.
func (s *Store) Delivered(ctx context.Context, app string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = key(app, id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	for i, v := range vals {
		if v != nil {
			out[ids[i]] = true
		}
	}
	return out, nil
}

// Record notes that Heap accepted ids.
func (s *Store) Record(ctx context.Context, app string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Set(ctx, key(app, id), 1, s.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}
