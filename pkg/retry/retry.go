// Package retry is the pipeline's one way of trying again: exponential
// backoff with jitter from github.com/cenkalti/backoff/v5, stretched to the
// wait a server asked for (Retry-After) when the error carries one. Every
// loop that waits out a dependency (Kafka, Redis, Heap, Mailchimp) goes
// through Do, so they all back off, give up and log the same way.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy says how to wait between tries. The zero Policy retries until the
// context ends, starting at 100 ms and never waiting more than 10 s.
type Policy struct {
	Initial time.Duration // first wait; default 100 ms
	Max     time.Duration // longest wait; default 10 s
	// MaxElapsed gives up once this much time has passed since the first
	// try (the last error is returned); zero retries until ctx ends.
	MaxElapsed time.Duration
	// After, when set, is the wait the error itself asks for (a server's
	// Retry-After); the wait is the longer of it and the backoff's.
	After func(error) time.Duration
	// Notify, when set, is called with each failure and the wait before the
	// next try: where callers log.
	Notify func(err error, wait time.Duration)
}

func (p Policy) backOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = cmp(p.Initial, 100*time.Millisecond)
	b.MaxInterval = cmp(p.Max, 10*time.Second)
	return b
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Permanent marks err as not worth retrying: Do returns it (unwrapped) at once.
func Permanent(err error) error { return backoff.Permanent(err) }

// Do runs op until it returns nil, returns a Permanent error, MaxElapsed has
// passed, or ctx ends (then it returns ctx's cause).
func Do(ctx context.Context, p Policy, op func() error) error {
	_, err := Value(ctx, p, func() (struct{}, error) { return struct{}{}, op() })
	return err
}

// Value is Do for an operation that returns a value.
func Value[T any](ctx context.Context, p Policy, op func() (T, error)) (T, error) {
	var last error
	var b backoff.BackOff = p.backOff()
	if p.After != nil {
		b = &hinted{BackOff: b, after: p.After, last: &last}
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(p.MaxElapsed)}
	if p.Notify != nil {
		opts = append(opts, backoff.WithNotify(p.Notify))
	}
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		last = err
		return v, err
	}, opts...)
}

// hinted waits at least what the last error asked for.
type hinted struct {
	backoff.BackOff
	after func(error) time.Duration
	last  *error
}

func (h *hinted) NextBackOff() time.Duration {
	next := h.BackOff.NextBackOff()
	if next == backoff.Stop || *h.last == nil {
		return next
	}
	return max(next, h.after(*h.last))
}

// Sleep waits d or until ctx ends, and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
