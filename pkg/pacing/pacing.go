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
// A margin of 1% absorbs the jitter between pacing a request and Heap
// counting it. For Heap's 15,000/min: bursts of 500, 14,350/min sustained.
func Budget(limitPerMin int) (perMin, burst int) {
	burst = max(1, min(1000, limitPerMin/30))
	return max(1, limitPerMin-burst-limitPerMin/100), burst
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
	mu     sync.Mutex
	lims   map[string]*rate.Limiter
	limit  int
	period time.Duration
}

// NewIdentities paces each identity at limitPerMin in any period (Heap's: a minute).
func NewIdentities(limitPerMin int, period time.Duration) *Identities {
	return &Identities{lims: map[string]*rate.Limiter{}, limit: limitPerMin, period: period}
}

// Take takes counts[identity] events of each identity's budget, all now or
// none: when one does not fit, nothing is taken and wait says how long until
// it may. undo gives back what was taken (the app budget said no). A count
// above MaxBatch never fits: callers cap batches per identity.
func (ids *Identities) Take(counts map[string]int) (wait time.Duration, undo func()) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	now := time.Now()
	var taken []*rate.Reservation
	undo = func() {
		ids.mu.Lock()
		defer ids.mu.Unlock()
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	for id, n := range counts {
		l, ok := ids.lims[id]
		if !ok {
			if len(ids.lims) > 100_000 {
				ids.prune()
			}
			perMin, burst := Budget(ids.limit)
			l = rate.NewLimiter(rate.Limit(float64(perMin)/ids.period.Seconds()), burst)
			ids.lims[id] = l
		}
		r := l.ReserveN(now, min(n, l.Burst()))
		taken = append(taken, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range taken {
			r.CancelAt(now)
		}
		return wait, func() {}
	}
	return 0, undo
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
