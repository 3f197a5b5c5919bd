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
// A set lives ttl after its last addition. An id of 32 hex digits (every
// event id) is kept as its 16 bytes (member).
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

// hourOf is t's hour since the epoch, floored (not toward zero).
func hourOf(t time.Time) int64 {
	h := t.Unix() / 3600
	if t.Unix() < 0 && t.Unix()%3600 != 0 {
		h--
	}
	return h
}

// The hash tag keeps one app's sets in one cluster slot, so a pipeline of
// them works on Redis Cluster.
func setKey(app string, hour int64) string {
	return "mh:delivered:{" + app + "}:h" + strconv.FormatInt(hour, 10)
}

// hourSet is one set's share of a call's keys.
type hourSet struct {
	hour int64
	key  string
	idx  []int // into the call's keys
	ids  []any // their members: pointers, which box without an allocation
}

// rawID is an id of 32 lowercase hex digits as its 16 bytes.
type rawID [16]byte

func (r *rawID) MarshalBinary() ([]byte, error) { return r[:], nil }

// member is id's set member: its 16 bytes when it is 32 lowercase hex
// digits, as every event id is (half the memory of the digits, and less of
// Redis's time per id), else id itself. raw is where the bytes go.
func member(id *string, raw *rawID) any {
	s := *id
	if len(s) != 2*len(raw) {
		return id
	}
	for i := range raw {
		hi, lo := unhex[s[2*i]], unhex[s[2*i+1]]
		if hi|lo > 15 {
			return id
		}
		raw[i] = hi<<4 | lo
	}
	return raw
}

// unhex is each byte's value as a lowercase hex digit, or 255.
var unhex = func() (t [256]byte) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9':
			t[c] = byte(c - '0')
		case 'a' <= c && c <= 'f':
			t[c] = byte(c - 'a' + 10)
		default:
			t[c] = 255
		}
	}
	return t
}()

// byHour groups keys by their set, in first-seen order. A batch's events
// mostly share an hour: the set's name is built once per hour, not per key.
func byHour(app string, keys []Key) []*hourSet {
	raws := make([]rawID, len(keys)) // every member's bytes, in one allocation
	var sets []*hourSet
	byH := map[int64]*hourSet{}
	var last *hourSet
	for i, k := range keys {
		h := hourOf(k.Time)
		s := last
		if s == nil || s.hour != h {
			if s = byH[h]; s == nil {
				s = &hourSet{hour: h, key: setKey(app, h)}
				if len(sets) == 0 { // room for all: most calls have one hour
					s.idx, s.ids = make([]int, 0, len(keys)), make([]any, 0, len(keys))
				}
				byH[h] = s
				sets = append(sets, s)
			}
			last = s
		}
		s.idx = append(s.idx, i)
		s.ids = append(s.ids, member(&keys[i].ID, &raws[i]))
	}
	return sets
}

func (s *Store) Delivered(ctx context.Context, app string, keys []Key) (map[string]bool, error) {
	out := map[string]bool{}
	if len(keys) == 0 {
		return out, nil
	}
	sets := byHour(app, keys)
	cmds := make([]*redis.BoolSliceCmd, len(sets))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, set := range sets {
			cmds[i] = p.SMIsMember(ctx, set.key, set.ids...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	for i, set := range sets {
		for j, found := range cmds[i].Val() {
			if found {
				out[keys[set.idx[j]].ID] = true
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
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, set := range byHour(app, keys) {
			p.SAdd(ctx, set.key, set.ids...)
			p.PExpire(ctx, set.key, s.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}
