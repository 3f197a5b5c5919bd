// Package pacing keeps Heap deliveries under Heap's rate limits before Heap
// has to say so: a per-app budget shared by every emitter instance through
// Redis (GCRA, as github.com/go-redis/redis_rate keeps it), and a per-identity
// budget kept by the one instance that owns the identity's partition.
//
// Budgets are reserved ahead: a sender is told when its request may go and
// the budget counts it from that moment, not from when the sender comes back
// to ask. A sender that wakes a few milliseconds late then loses nothing; a
// bucket whose burst is one request (Heap's 15,000/min: bursts of 500) would
// otherwise lose every late wake-up, which on a busy machine was several
// percent of the rate.
package pacing

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Budget turns "at most limit events in any minute" into a token bucket
// whose burst plus one minute of refill never exceeds limit: Heap counts a
// sliding minute, so a bucket with a full-minute burst could send twice the limit.
// A margin of 1% absorbs the jitter between pacing a request and Heap
// counting it. For Heap's 15,000/min: bursts of 500, 14,350/min sustained.
func Budget(limitPerMin int) (perMin, burst int) {
	burst = max(1, min(1000, limitPerMin/30))
	return max(1, limitPerMin-burst-limitPerMin/100), burst
}

// Apps paces each Heap app through Redis, shared by all emitter instances.
type Apps struct {
	rdb redis.UniversalClient
	// Period is the window of a limit; Heap's is a minute. Tests shorten it.
	Period time.Duration
}

// NewApps returns an app limiter on rdb.
func NewApps(rdb redis.UniversalClient) *Apps {
	return &Apps{rdb: rdb, Period: time.Minute}
}

// reserve is GCRA with the state redis_rate keeps (the theoretical arrival
// time, seconds since 2017, under the same key), so instances running
// redis_rate's AllowN and instances reserving share one budget. Unlike
// AllowN it grants a request that fits within max_wait seconds at once and
// says how long to wait before sending it: the budget is spent at the send
// time it returns, so the caller's late wake-up costs no budget. A request
// further away than max_wait takes nothing and gets how long until asking
// again may succeed.
var reserve = redis.NewScript(`
redis.replicate_commands()

local key = KEYS[1]
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])

local emission_interval = period / rate
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", key)
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)

local new_tat = tat + emission_interval * cost
local wait = new_tat - emission_interval * burst - now
if wait > max_wait then
  return {0, tostring(wait - max_wait)}
end
redis.call("SET", key, new_tat, "EX", math.ceil(new_tat - now))
return {1, tostring(math.max(wait, 0))}
`)

// Reserve takes n events of app's budget (limitPerMin in any minute) and
// returns how long to wait before sending them; the budget counts them from
// then. n above the burst never fits at once (an error), so callers cap
// batches at MaxBatch(limitPerMin). While other senders of the app hold
// reservations more than two bursts ahead, it waits its turn.
func (a *Apps) Reserve(ctx context.Context, app string, limitPerMin, n int) (time.Duration, error) {
	perMin, burst := Budget(limitPerMin)
	if n > burst {
		return 0, fmt.Errorf("pacing app %s: %d events exceed the burst of %d", app, n, burst)
	}
	interval := a.Period.Seconds() / float64(perMin)
	maxWait := 2 * float64(burst) * interval
	for {
		res, err := reserve.Run(ctx, a.rdb, []string{"mh:pace:app:" + app},
			burst, perMin, a.Period.Seconds(), n, maxWait).Slice()
		if err != nil {
			return 0, fmt.Errorf("pacing app %s: %w", app, err)
		}
		wait, err := seconds(res)
		if err != nil {
			return 0, fmt.Errorf("pacing app %s: %w", app, err)
		}
		if res[0] == int64(1) {
			return wait, nil
		}
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

func seconds(res []any) (time.Duration, error) {
	if len(res) != 2 {
		return 0, fmt.Errorf("reserve answered %v", res)
	}
	s, _ := res[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("reserve answered %v: %w", res, err)
	}
	// Round up: early is over the budget, late is only late.
	return time.Duration(f*float64(time.Second)) + time.Microsecond, nil
}

// MaxBatch is the largest request a budget of limitPerMin can grant at once.
func MaxBatch(limitPerMin int) int {
	_, burst := Budget(limitPerMin)
	return burst
}

// Identities paces each identity locally. Heap's events are keyed by app and
// identity, so one identity's events live on one partition and one emitter
// instance owns them at a time: no shared state is needed.
type Identities struct {
	mu     sync.Mutex
	lims   map[string]*rate.Limiter
	limit  int
	period time.Duration
}

// NewIdentities paces each identity at limitPerMin in any period (Heap's: a minute).
func NewIdentities(limitPerMin int, period time.Duration) *Identities {
	return &Identities{lims: map[string]*rate.Limiter{}, limit: limitPerMin, period: period}
}

// Wait says how long after at counts[identity] events of every identity
// fit, taking nothing. A count above MaxBatch never fits: callers cap
// batches per identity.
func (ids *Identities) Wait(counts map[string]int, at time.Time) time.Duration {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	var wait time.Duration
	for id, n := range counts {
		l := ids.lims[id]
		if l == nil {
			continue // a fresh identity has its whole burst
		}
		if short := float64(min(n, l.Burst())) - l.TokensAt(at); short > 0 {
			wait = max(wait, time.Duration(short/float64(l.Limit())*float64(time.Second))+time.Microsecond)
		}
	}
	return wait
}

// Take takes counts[identity] events of each identity's budget at at (the
// send time), all or none: when one does not fit, nothing is taken and wait
// says how long after at it may. Callers take in send-time order.
func (ids *Identities) Take(counts map[string]int, at time.Time) (wait time.Duration) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	var taken []*rate.Reservation
	for id, n := range counts {
		l, ok := ids.lims[id]
		if !ok {
			if len(ids.lims) > 100_000 {
				ids.prune(at)
			}
			perMin, burst := Budget(ids.limit)
			l = rate.NewLimiter(rate.Limit(float64(perMin)/ids.period.Seconds()), burst)
			ids.lims[id] = l
		}
		r := l.ReserveN(at, min(n, l.Burst()))
		taken = append(taken, r)
		wait = max(wait, r.DelayFrom(at))
	}
	if wait > 0 {
		for _, r := range taken {
			r.CancelAt(at)
		}
	}
	return wait
}

// prune drops limiters that are full again: they hold no state worth keeping.
func (ids *Identities) prune(at time.Time) {
	for k, l := range ids.lims {
		if l.TokensAt(at) >= float64(l.Burst()) {
			delete(ids.lims, k)
		}
	}
}
