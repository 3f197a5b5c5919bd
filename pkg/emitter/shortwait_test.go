package emitter

import (
	"context"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
)

type noPacer struct{}

func (noPacer) Reserve(context.Context, string, int, int) (time.Duration, error) { return 0, nil }

// TestShortWait: a paced app's short batch waits for its paused partitions
// for as long as its budget takes to grant a full batch (500 events at
// 15,000/min: 2 s), then goes out; unpaced, or with its partitions fetched,
// it goes at once.
func TestShortWait(t *testing.T) {
	src := &config.Source{ID: "s", HeapAppID: "a", AppEventsPerMinute: heap.AppEventsPerMin, IdentityEventsPerMinute: 1000}
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
