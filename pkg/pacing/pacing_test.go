package pacing_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
)

func TestBudgetUnderLimit(t *testing.T) {
	for _, limit := range []int{30, 150, 1000, 15000, 100000} {
		perMin, burst := pacing.Budget(limit)
		if burst+perMin > limit || perMin < 1 || burst < 1 {
			t.Errorf("Budget(%d) = %d/min, burst %d: over the limit", limit, perMin, burst)
		}
	}
}

func TestReserveOverBurst(t *testing.T) {
	apps := pacing.NewApps(redistest.Client(t))
	if _, err := apps.Reserve(context.Background(), "over-burst", 15000, pacing.MaxBatch(15000)+1); err == nil {
		t.Fatal("a request above the burst was reserved")
	}
}

// TestReserveSharedUnderHeapLimit: three senders of one app, each sending
// full bursts as soon as their reservation says, never get a 429 from the
// stand-in enforcing the app limit (on a two-second window, so the test is short).
func TestReserveSharedUnderHeapLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: three senders against the Heap stand-in for three real-time pacing windows")
	}
	const window, limit = 2 * time.Second, 1000
	sink := heaptest.NewServer(t, heaptest.WithLimits(heaptest.Limits{PerApp: limit, Window: window}))
	apps := pacing.NewApps(redistest.Client(t))
	apps.Period = window
	app := fmt.Sprintf("shared-%d", time.Now().UnixNano())
	client := &heap.Client{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 3*window)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for s := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				n := pacing.MaxBatch(limit)
				wait, err := apps.Reserve(ctx, app, limit, n)
				if err != nil {
					return // ctx ended
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				evs := make([]heap.Event, n)
				for j := range evs {
					evs[j] = heap.Event{Identity: fmt.Sprintf("u%d", j), Event: "e",
						IdempotencyKey: fmt.Sprintf("%d-%d-%d", s, i, j)}
				}
				if err := client.Track(ctx, sink.URL, app, evs); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := sink.Stats(); st.Throttled != 0 || st.Accepted == 0 {
		t.Fatalf("stand-in stats %+v: want events accepted and no 429", st)
	}
}
