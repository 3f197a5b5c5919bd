// Package ledger remembers, in Redis and for a while, which events Heap
// already accepted, so an emitter that takes over a partition after a
// rebalance or a restart does not send them again. Heap's idempotency_key
// stays the last guard: the ledger only saves requests.
package ledger

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps delivered event ids in one set per app and hour of the
// events' own time, mh:delivered:{app}:h{hours since 1970}: a request's
// events mostly share an hour, so noting or looking up 1000 of them is a
// command or two, where a key per event made Redis the emitter's limit.
// A set lives ttl after its last addition.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// Key is a delivered event: its id, and its time, which picks its set.
type Key struct {
	ID   string
	Time time.Time
}

// NewStore returns a ledger whose sets live for ttl after their last event.
func NewStore(rdb redis.UniversalClient, ttl time.Duration) *Store {
	return &Store{rdb: rdb, ttl: ttl}
}

// The hash tag keeps one app's sets in one cluster slot, so a pipeline of
// them works on Redis Cluster.
func setKey(app string, t time.Time) string {
	h := t.Unix() / 3600
	if t.Unix() < 0 && t.Unix()%3600 != 0 {
		h-- // floor, not toward zero
	}
	return "mh:delivered:{" + app + "}:h" + strconv.FormatInt(h, 10)
}

// byHour groups keys' indexes by their set.
func byHour(app string, keys []Key) (order []string, idx map[string][]int) {
	idx = map[string][]int{}
	for i, k := range keys {
		s := setKey(app, k.Time)
		if _, ok := idx[s]; !ok {
			order = append(order, s)
		}
		idx[s] = append(idx[s], i)
	}
	return order, idx
}

// Delivered returns which of keys' ids Heap already accepted, in one round trip.
func (s *Store) Delivered(ctx context.Context, app string, keys []Key) (map[string]bool, error) {
	out := map[string]bool{}
	if len(keys) == 0 {
		return out, nil
	}
	order, idx := byHour(app, keys)
	cmds := make([]*redis.BoolSliceCmd, len(order))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, set := range order {
			members := make([]any, len(idx[set]))
			for j, ki := range idx[set] {
				members[j] = keys[ki].ID
			}
			cmds[i] = p.SMIsMember(ctx, set, members...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	for i, set := range order {
		for j, found := range cmds[i].Val() {
			if found {
				out[keys[idx[set][j]].ID] = true
			}
		}
	}
	return out, nil
}

// Record notes that Heap accepted keys' ids.
func (s *Store) Record(ctx context.Context, app string, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	order, idx := byHour(app, keys)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, set := range order {
			members := make([]any, len(idx[set]))
			for j, ki := range idx[set] {
				members[j] = keys[ki].ID
			}
			p.SAdd(ctx, set, members...)
			p.PExpire(ctx, set, s.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}
