// Package pending keeps the current content of heap.events.pending in Redis,
// indexed by app and email key, so the events waiting for an identity can be
// found when it arrives. The compacted topic is the truth; this is its cache.
package pending

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is one waiting event: its Avro value and since when it waits.
type Entry struct {
	EventID string
	Since   time.Time
	Value   []byte
}

// Member is one address with waiting events, and the oldest one's age.
type Member struct {
	EmailKey string
	Oldest   time.Time
}

// Index stores entries in a hash per (app, email key) and the addresses in a
// sorted set per app scored by their oldest entry. Both share one hash tag
// per app, so the scripts below touch a single cluster slot.
type Index struct {
	rdb redis.UniversalClient
}

// New returns an Index on rdb.
func New(rdb redis.UniversalClient) *Index { return &Index{rdb: rdb} }

func hashKey(app, emailKey string) string { return "mh:pending:{" + app + "}:" + emailKey }
func setKey(app string) string            { return "mh:pending:{" + app + "}" }

// add stores an entry and lowers the address's score to its age.
var add = redis.NewScript(`
local n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local cur = redis.call('ZSCORE', KEYS[2], ARGV[4])
if (not cur) or tonumber(ARGV[2]) < tonumber(cur) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
end
return n`)

// remove deletes entries, returns the values it deleted, and drops the
// address from the set once it has none left.
var remove = redis.NewScript(`
local out = {}
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    redis.call('HDEL', KEYS[1], ARGV[i])
    table.insert(out, v)
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return out`)

func encode(since time.Time, value []byte) string {
	b := make([]byte, 8, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(since.UnixMilli()))
	return string(append(b, value...))
}

func decode(id, v string) (Entry, error) {
	if len(v) < 8 {
		return Entry{}, errors.New("pending: short entry")
	}
	ms := int64(binary.BigEndian.Uint64([]byte(v[:8])))
	return Entry{EventID: id, Since: time.UnixMilli(ms).UTC(), Value: []byte(v[8:])}, nil
}

// Add records a waiting event; added is false when it was already there.
func (x *Index) Add(ctx context.Context, app, emailKey string, e Entry) (added bool, err error) {
	n, err := add.Run(ctx, x.rdb, []string{hashKey(app, emailKey), setKey(app)},
		e.EventID, e.Since.UnixMilli(), encode(e.Since, e.Value), emailKey).Int()
	if err != nil {
		return false, fmt.Errorf("pending: add: %w", err)
	}
	return n == 1, nil
}

// Remove deletes the given events of an address and returns those that were
// there (so a caller counts each removal once).
func (x *Index) Remove(ctx context.Context, app, emailKey string, eventIDs ...string) ([]Entry, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(eventIDs)+1)
	args = append(args, emailKey)
	for _, id := range eventIDs {
		args = append(args, id)
	}
	vals, err := remove.Run(ctx, x.rdb, []string{hashKey(app, emailKey), setKey(app)}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("pending: remove: %w", err)
	}
	out := make([]Entry, 0, len(vals))
	for _, v := range vals {
		e, err := decode("", v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Get returns the waiting events of an address.
func (x *Index) Get(ctx context.Context, app, emailKey string) ([]Entry, error) {
	m, err := x.rdb.HGetAll(ctx, hashKey(app, emailKey)).Result()
	if err != nil {
		return nil, fmt.Errorf("pending: get: %w", err)
	}
	out := make([]Entry, 0, len(m))
	for id, v := range m {
		e, err := decode(id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Has reports which of emailKeys have waiting events, in one pipeline.
func (x *Index) Has(ctx context.Context, app string, emailKeys []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(emailKeys) == 0 {
		return out, nil
	}
	cmds := make([]*redis.FloatCmd, len(emailKeys))
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range emailKeys {
			cmds[i] = p.ZScore(ctx, setKey(app), k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending: has: %w", err)
	}
	for i, c := range cmds {
		if c.Err() == nil {
			out[emailKeys[i]] = true
		}
	}
	return out, nil
}

// Each calls fn with pages of the app's addresses until fn returns false or
// an error. SCAN semantics: every address present for the whole walk is
// seen, whatever fn removes meanwhile.
func (x *Index) Each(ctx context.Context, app string, page int64, fn func([]Member) (bool, error)) error {
	var cursor uint64
	for {
		kv, next, err := x.rdb.ZScan(ctx, setKey(app), cursor, "", page).Result()
		if err != nil {
			return fmt.Errorf("pending: scan: %w", err)
		}
		if len(kv) > 0 {
			ms := make([]Member, 0, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				score, _ := strconv.ParseFloat(kv[i+1], 64)
				ms = append(ms, Member{EmailKey: kv[i], Oldest: time.UnixMilli(int64(score)).UTC()})
			}
			more, err := fn(ms)
			if err != nil || !more {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Count returns how many addresses of app have waiting events.
func (x *Index) Count(ctx context.Context, app string) (int64, error) {
	n, err := x.rdb.ZCard(ctx, setKey(app)).Result()
	if err != nil {
		return 0, fmt.Errorf("pending: count: %w", err)
	}
	return n, nil
}
