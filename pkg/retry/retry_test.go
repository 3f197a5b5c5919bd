package retry_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

var errBusy = errors.New("busy")

func TestDo(t *testing.T) {
	tests := []struct {
		name      string
		policy    retry.Policy
		failures  int   // op fails this many times, then succeeds
		fail      error // what it fails with
		wantErr   error
		wantTries int
		minWait   time.Duration // total time waited at least
		maxWait   time.Duration // and at most
	}{
		{name: "first try", wantTries: 1},
		{name: "three failures", failures: 3, fail: errBusy, wantTries: 4,
			policy: retry.Policy{Initial: time.Second, Max: time.Second}, minWait: 1500 * time.Millisecond, maxWait: 4500 * time.Millisecond},
		{name: "permanent", failures: 5, fail: retry.Permanent(errBusy), wantErr: errBusy, wantTries: 1},
		{name: "gives up after MaxElapsed", failures: 100, fail: errBusy, wantErr: errBusy,
			policy: retry.Policy{Initial: time.Second, Max: time.Second, MaxElapsed: 5 * time.Second}, wantTries: -1, maxWait: 5 * time.Second},
		{name: "server asks for longer", failures: 1, fail: errBusy, wantTries: 2,
			policy:  retry.Policy{Initial: time.Millisecond, After: func(error) time.Duration { return 7 * time.Second }},
			minWait: 7 * time.Second, maxWait: 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tries, notified := 0, 0
				p := tt.policy
				p.Notify = func(error, time.Duration) { notified++ }
				start := time.Now()
				err := retry.Do(t.Context(), p, func() error {
					tries++
					if tries <= tt.failures {
						return tt.fail
					}
					return nil
				})
				waited := time.Since(start)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantTries >= 0 && tries != tt.wantTries {
					t.Errorf("tries = %d, want %d", tries, tt.wantTries)
				}
				if notified != tries-1 && err == nil {
					t.Errorf("notified %d times for %d tries", notified, tries)
				}
				if waited < tt.minWait || waited > tt.maxWait {
					t.Errorf("waited %v, want %v..%v", waited, tt.minWait, tt.maxWait)
				}
			})
		})
	}
}

func TestDoStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		err := retry.Do(ctx, retry.Policy{}, func() error { return errBusy })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's deadline", err)
		}
	})
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !retry.Sleep(t.Context(), time.Minute) || time.Since(start) != time.Minute {
			t.Fatalf("Sleep returned early or false after %v", time.Since(start))
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if retry.Sleep(ctx, time.Minute) || retry.Sleep(ctx, 0) {
			t.Fatal("Sleep on an ended context reported true")
		}
	})
}
