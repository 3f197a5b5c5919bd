// Package pacing keeps Heap deliveries under Heap's rate limits before Heap
// has to say so: a per-app budget shared by every emitter instance through
// Redis (GCRA, github.com/go-redis/redis_rate), and a per-identity budget
// kept by the one instance that owns the identity's partition.
package pacing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Budget turns "at most limit events in any minute" into a token bucket
// whose burst plus one minute of refill never exceeds limit: Heap counts a
// sliding minute, so a bucket with a full-minute burst could send twice the limit.
func Budget(limitPerMin int) (perMin, burst int) {
	burst = max(1, min(1000, limitPerMin/25))
	return limitPerMin - burst, burst
}

// Apps paces each Heap app through Redis, shared by all emitter instances.
type Apps struct {
	lim *redis_rate.Limiter
	// Period is the window of a limit; Heap's is a minute. Tests shorten it.
	Period time.Duration
}

// NewApps returns an app limiter on rdb.
func NewApps(rdb redis.UniversalClient) *Apps {
	return &Apps{lim: redis_rate.NewLimiter(rdb), Period: time.Minute}
}

// Reserve asks for n events of app's budget (limitPerMin in any minute).
// It returns 0 when they may be sent now, else how long to wait before
// asking again; n above the burst is never granted, so callers cap batches
// at MaxBatch(limitPerMin).
func (a *Apps) Reserve(ctx context.Context, app string, limitPerMin, n int) (time.Duration, error) {
	perMin, burst := Budget(limitPerMin)
	res, err := a.lim.AllowN(ctx, "mh:pace:app:"+app, redis_rate.Limit{Rate: perMin, Burst: burst, Period: a.Period}, n)
	if err != nil {
		return 0, fmt.Errorf("pacing app %s: %w", app, err)
	}
	if res.Allowed >= n {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
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
	mu    sync.Mutex
	lims   map[string]*rate.Limiter
	limit  int
	period time.Duration
}

// NewIdentities paces each identity at limitPerMin in any period (Heap's: a minute).
func NewIdentities(limitPerMin int, period time.Duration) *Identities {
	return &Identities{lims: map[string]*rate.Limiter{}, limit: limitPerMin, period: period}
}

// Reserve takes n events of identity's budget and returns how long to wait
// before sending them (0: now).
func (ids *Identities) Reserve(identity string, n int) time.Duration {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	l, ok := ids.lims[identity]
	if !ok {
		if len(ids.lims) > 100_000 {
			ids.prune()
		}
		perMin, burst := Budget(ids.limit)
		l = rate.NewLimiter(rate.Limit(float64(perMin)/ids.period.Seconds()), burst)
		ids.lims[identity] = l
	}
	if n > l.Burst() {
		n = l.Burst()
	}
	return l.ReserveN(time.Now(), n).Delay()
}

// prune drops limiters that are full again: they hold no state worth keeping.
func (ids *Identities) prune() {
	now := time.Now()
	for k, l := range ids.lims {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(ids.lims, k)
		}
	}
}
