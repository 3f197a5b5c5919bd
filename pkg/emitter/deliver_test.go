package emitter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
)

// TestSendSplitsRejected: a request Heap rejects (400: heap.ErrRejected)
// is not retried but split in halves, recursively, until the events Heap
// refuses are alone; those are dead-lettered with Heap's answer, the others
// delivered once. Answers Heap may get over (5xx, 408, 429, timeouts) are
// retried, waiting at least Heap's Retry-After, without splitting. Every
// event ends done, so the whole batch commits.
func TestSendSplitsRejected(t *testing.T) {
	cases := []struct {
		name      string
		n         int           // events e0..e(n-1), in one batch
		refuse    []int         // the events Heap refuses
		faults    map[int]error // answers to requests (numbered from 0) instead of Heap's judgement
		produce   []error       // the first dead-letter produces fail with these
		requests  []int         // the sizes of the requests sent, in order
		retryable int           // requests answered with retryable errors
		minWait   time.Duration // the batch takes at least this long
	}{
		{name: "accepted whole", n: 8, requests: []int{8}},
		{name: "one refused: halved until it is alone", n: 8, refuse: []int{5},
			requests: []int{8, 4, 4, 2, 1, 1, 2}},
		{name: "two refused in one half", n: 8, refuse: []int{0, 3},
			requests: []int{8, 4, 2, 1, 1, 2, 1, 1, 4}},
		{name: "one refused in each half", n: 8, refuse: []int{1, 6},
			requests: []int{8, 4, 2, 1, 1, 2, 4, 2, 2, 1, 1}},
		{name: "every event refused", n: 4, refuse: []int{0, 1, 2, 3},
			requests: []int{4, 2, 1, 1, 2, 1, 1}},
		{name: "odd sizes: the second half is the larger", n: 5, refuse: []int{4},
			requests: []int{5, 2, 3, 1, 2, 1, 1}},
		{name: "a lone refused event", n: 1, refuse: []int{0}, requests: []int{1}},
		{name: "retryable answers retried, not split", n: 4,
			faults: map[int]error{0: heap.Answer(503, 0, ""), 1: heap.Answer(408, 0, ""),
				2: heap.Answer(429, 0, ""), 3: errTimeout},
			requests: []int{4, 4, 4, 4, 4}, retryable: 4},
		{name: "a 429 waits its Retry-After", n: 4,
			faults:   map[int]error{0: heap.Answer(429, 7*time.Second, "")},
			requests: []int{4, 4}, retryable: 1, minWait: 7 * time.Second},
		{name: "a 503 while splitting retries that half", n: 4, refuse: []int{3},
			faults:   map[int]error{1: heap.Answer(503, 0, "")},
			requests: []int{4, 2, 2, 2, 1, 1}, retryable: 1},
		{name: "a failed dead-letter produce is retried", n: 2, refuse: []int{1},
			produce: []error{errors.New("broker down"), errors.New("broker down")}, requests: []int{2, 1, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tl := newTestLoop(t)
				for n, err := range c.faults {
					tl.heap.faults[n] = err
				}
				tl.kafka.produceErrs = c.produce
				var ids []string
				for i := range c.n {
					ids = append(ids, fmt.Sprintf("e%d", i))
				}
				wantDead, wantAccepted := map[string]string{}, map[string]int{}
				for _, i := range c.refuse {
					tl.heap.refuse[ids[i]] = true
					wantDead[ids[i]] = refusal(ids[i]).Error()
				}
				for _, id := range ids {
					if !tl.heap.refuse[id] {
						wantAccepted[id] = 1
					}
				}
				b := tl.batch(t, ids)
				k := batchKey{url: tl.cfg.HeapURL, app: "app-acme"}
				start := time.Now()

				// A bound in the bubble's time, should it retry forever.
				ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
				defer cancel()
				var req request
				s, ok := tl.deliver(ctx, k, b.items, &req)
				if !ok {
					t.Fatalf("no answer after an hour: %d requests", len(tl.heap.requests))
				}
				tl.record(ctx, k, s)

				if took := time.Since(start); took < c.minWait {
					t.Errorf("took %v, want at least %v", took, c.minWait)
				}
				if diff := cmp.Diff(c.requests, tl.heap.sizes()); diff != "" {
					t.Errorf("request sizes (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantAccepted, tl.heap.accepted); diff != "" {
					t.Errorf("accepted (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantDead, tl.kafka.dead()); diff != "" {
					t.Errorf("dead letters' reasons (-want +got):\n%s", diff)
				}
				p := tl.parts[tp{testTopic, 0}]
				for i, d := range done(p) {
					if !d {
						t.Errorf("e%d not done", i)
					}
				}
				tl.checkCounts(t, k.app, c.n-len(c.refuse), len(c.refuse), c.retryable)
				if n := len(tl.retries("dead-letter produce")); n != len(c.produce) {
					t.Errorf("logged %d dead-letter produce retries, want %d", n, len(c.produce))
				}
			})
		})
	}
}

// checkCounts checks the requests' and events' metrics of app against what
// Heap answered, and that each retryable answer was logged.
func (tl *testLoop) checkCounts(t *testing.T, app string, delivered, dead, retryable int) {
	t.Helper()
	answers := tl.heap.answers()
	if answers["retryable"] != retryable {
		t.Errorf("%d retryable answers, want %d", answers["retryable"], retryable)
	}
	ms := tl.metrics
	got := []float64{counter(t, ms.HeapRequests, app, "ok"), counter(t, ms.HeapRequests, app, "rejected"),
		counter(t, ms.HeapRequests, app, "retryable"),
		counter(t, ms.EmitterEvents, app, "", "dead_lettered"),
		counter(t, ms.EmitterEvents, app, events.NameOpen, "delivered")}
	want := []float64{float64(answers["ok"]), float64(answers["rejected"]), float64(retryable),
		float64(dead), float64(delivered)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests ok, rejected, retryable; events dead-lettered, delivered (-want +got):\n%s", diff)
	}
	if n := len(tl.retries("heap track")); n != retryable {
		t.Errorf("logged %d retries, want %d", n, retryable)
	}
}

// TestSendStopsWithCtx: while Heap fails, a batch is retried until ctx
// ends; then nothing of it is done or dead-lettered: it stays uncommitted.
func TestSendStopsWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tl := newTestLoop(t)
		tl.heap.setDown("app-acme", true)
		b := tl.batch(t, []string{"e0", "e1"})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var req request
		if _, ok := tl.deliver(ctx, batchKey{app: "app-acme"}, b.items, &req); ok {
			t.Fatal("deliver returned ok after ctx ended")
		}
		if n := len(tl.heap.requests); n < 10 {
			t.Errorf("%d requests in a minute", n)
		}
		if d := done(tl.parts[tp{testTopic, 0}]); d[0] || d[1] {
			t.Errorf("done %v", d)
		}
		if len(tl.kafka.dead()) != 0 {
			t.Errorf("dead-lettered %v", tl.kafka.dead())
		}
	})
}

// TestBackoff: retries start at 100 ms for a dependency (here the
// dead-letter topic) and at 200 ms for Heap, grow, and stay under
// MaxBackoff (give or take the jitter of ±50%).
func TestBackoff(t *testing.T) {
	cases := []struct {
		what    string
		initial time.Duration
		fail    func(tl *testLoop)
		run     func(ctx context.Context, tl *testLoop)
	}{
		{"dead-letter produce", 100 * time.Millisecond,
			func(tl *testLoop) {
				for range 20 {
					tl.kafka.produceErrs = append(tl.kafka.produceErrs, errors.New("broker down"))
				}
			},
			func(ctx context.Context, tl *testLoop) { tl.produceDead(ctx, []*kgo.Record{{Topic: testDLQ}}) }},
		{"heap track", 200 * time.Millisecond,
			func(tl *testLoop) {
				for i := range 20 {
					tl.heap.faults[i] = heap.Answer(503, 0, "")
				}
			},
			func(ctx context.Context, tl *testLoop) { tl.track(ctx, batchKey{app: "app-acme"}, nil) }},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tl := newTestLoop(t, func(cfg *Config) { cfg.MaxBackoff = 2 * time.Second })
				c.fail(tl)
				c.run(t.Context(), tl)
				waits := tl.retries(c.what)
				if len(waits) != 20 {
					t.Fatalf("%d retries, want 20", len(waits))
				}
				if w := waits[0]; w < c.initial/2 || w > c.initial*3/2 {
					t.Errorf("first wait %v, want %v ± 50%%", w, c.initial)
				}
				for i, w := range waits {
					if w > 3*time.Second {
						t.Errorf("wait %d: %v, over MaxBackoff (2s) + 50%%", i, w)
					}
				}
				if w := waits[len(waits)-1]; w < time.Second {
					t.Errorf("last wait %v: the backoff did not grow to MaxBackoff (2s) - 50%%", w)
				}
			})
		})
	}
}

var errTimeout = errors.New("heap: Post: context deadline exceeded (Client.Timeout exceeded)")
