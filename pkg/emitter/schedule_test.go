package emitter

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// TestTake: a full batch is taken at once; a short one lingers (Linger,
// exactly) for more, up to the batch limit. Paced, a batch holds at most
// an identity's burst of its events, the rest kept, in order, for the next.
func TestTake(t *testing.T) {
	const linger = 20 * time.Millisecond
	cases := []struct {
		name       string
		paced      bool
		identities string // the queued events' identities, one letter each
		arriving   string // events queued 10 ms into the linger
		taken      string
		left       string
		took       time.Duration
	}{
		{name: "a full batch goes at once", identities: "abcdef", taken: "abcd", left: "ef"},
		{name: "a short batch lingers for more", identities: "ab", arriving: "c", taken: "abc", took: linger},
		{name: "what arrives beyond the limit waits", identities: "abc", arriving: "def", taken: "abcd", left: "ef",
			took: linger},
		{name: "paced: an identity's burst at most", paced: true, identities: "xxxxxxyy", taken: "xxxxxyy", left: "x",
			took: linger},
		{name: "paced: others pass an identity's events over its burst", paced: true, identities: "xyxxxxxzx",
			arriving: "z", taken: "xyxxxxzz", left: "xx", took: linger},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := &loop{cfg: Config{MaxBatch: 4, Linger: linger}}
				if c.paced {
					// 15,000 a minute: batches of 500; 150 an identity: bursts of 5.
					l.cfg.Pacer, l.cfg.MaxBatch = noPacer{}, heap.MaxBatch
				}
				src := &source.Source{AppEventsPerMinute: heap.AppEventsPerMin, IdentityEventsPerMinute: 150}
				q := &queue{}
				add := func(ids string) {
					l.mu.Lock()
					defer l.mu.Unlock()
					for _, id := range ids {
						q.items = append(q.items, &item{src: src, identity: string(id)})
					}
				}
				add(c.identities)
				if c.arriving != "" {
					go func() {
						time.Sleep(linger / 2)
						add(c.arriving)
					}()
				}
				start := time.Now()
				batch := l.take(t.Context(), q)
				if took := time.Since(start); took != c.took {
					t.Errorf("took %v, want %v", took, c.took)
				}
				synctest.Wait()
				if got := identities(batch); got != c.taken {
					t.Errorf("taken %q, want %q", got, c.taken)
				}
				if got := identities(q.items); got != c.left {
					t.Errorf("left %q, want %q", got, c.left)
				}
				if q.inflight != len(batch) {
					t.Errorf("%d in flight, want %d", q.inflight, len(batch))
				}
			})
		})
	}
}

// TestTakeStopsWithCtx: a batch lingering when ctx ends is not taken.
func TestTakeStopsWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &loop{cfg: Config{MaxBatch: 4, Linger: time.Second}}
		q := &queue{items: []*item{{identity: "a"}}}
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		if batch := l.take(ctx, q); batch != nil || len(q.items) != 1 || q.inflight != 0 {
			t.Errorf("took %d, left %d, %d in flight", len(batch), len(q.items), q.inflight)
		}
	})
}

// TestDue: a worker takes a full batch at once, a short one only while none
// is in flight, and a paced app's short batch, while its partition is
// paused, once its budget could grant a full one: it is poked then.
func TestDue(t *testing.T) {
	src := &source.Source{AppEventsPerMinute: heap.AppEventsPerMin, IdentityEventsPerMinute: 1000}
	mine := tp{testTopic, 0}
	cases := []struct {
		name     string
		paced    bool
		queued   int
		inflight int
		paused   bool
		due      bool
		poked    time.Duration // after this long; 0: not poked
	}{
		{name: "empty", due: false},
		{name: "full", queued: 500, inflight: 500, due: true},
		{name: "short, none in flight", queued: 3, due: true},
		{name: "short, one in flight: waits for it", queued: 3, inflight: 500, due: false},
		{name: "paced, short, its partition fetched", paced: true, queued: 3, due: true},
		{name: "paced, short, its partition paused: waits a full grant", paced: true, queued: 3, paused: true,
			due: false, poked: 2 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := &loop{cfg: Config{MaxBatch: heap.MaxBatch / 2}, paused: map[tp]bool{}}
				if c.paced {
					l.cfg.Pacer = noPacer{}
				}
				q := &queue{inflight: c.inflight, wake: make(chan struct{}, 1)}
				for range c.queued {
					q.items = append(q.items, &item{src: src})
				}
				l.parts = map[tp]*partition{mine: {key: mine, apps: map[*queue]int{q: c.queued}}}
				if c.paused {
					l.paused[mine] = true
				}
				start := time.Now()
				if got := l.due(q); got != c.due {
					t.Errorf("due = %v, want %v", got, c.due)
				}
				select {
				case <-q.wake:
					if took := time.Since(start); took != c.poked {
						t.Errorf("poked after %v, want %v", took, c.poked)
					}
				case <-time.After(time.Hour):
					if c.poked != 0 {
						t.Errorf("not poked, want after %v", c.poked)
					}
				}
			})
		})
	}
}

// identities are the items' identities, one letter each.
func identities(items []*item) string {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(it.identity)
	}
	return b.String()
}

type noPacer struct{}

func (noPacer) Reserve(context.Context, string, int, int) (time.Duration, error) { return 0, nil }

// TestShortWait: a paced app's short batch waits for its paused partitions
// for as long as its budget takes to grant a full batch (500 events at
// 15,000/min: 2 s), then goes out; unpaced, or with its partitions fetched,
// it goes at once.
func TestShortWait(t *testing.T) {
	src := &source.Source{ID: "s", HeapAppID: "a", AppEventsPerMinute: heap.AppEventsPerMin, IdentityEventsPerMinute: 1000}
	k := batchKey{app: "a"}
	other := tp{"t", 1}
	mine := tp{"t", 0}
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name   string
		pacer  Pacer
		paused tp
		at     time.Duration // after t0
		want   time.Duration
	}{
		{"unpaced", nil, mine, 0, 0},
		{"paced, its partition fetched", noPacer{}, other, 0, 0},
		{"paced, its partition paused: waits a full grant", noPacer{}, mine, 0, 2 * time.Second},
		{"still waiting", noPacer{}, mine, 1500 * time.Millisecond, 500 * time.Millisecond},
		{"waited enough: goes short", noPacer{}, mine, 2100 * time.Millisecond, 0},
		{"the next short batch waits again", noPacer{}, mine, 2200 * time.Millisecond, 2 * time.Second},
		{"resumed: goes at once", noPacer{}, other, 2300 * time.Millisecond, 0},
	}
	q := &queue{key: k, items: []*item{{src: src}}}
	l := &loop{parts: map[tp]*partition{
		mine:  {key: mine, apps: map[*queue]int{q: 3}},
		other: {key: other, apps: map[*queue]int{{key: batchKey{app: "b"}}: 3}},
	}}
	for _, st := range steps {
		l.cfg.Pacer, l.cfg.MaxBatch = st.pacer, heap.MaxBatch
		l.paused = map[tp]bool{st.paused: true}
		if got := l.shortWait(q, t0.Add(st.at)); got != st.want {
			t.Errorf("%s: shortWait = %v, want %v", st.name, got, st.want)
		}
	}
}
