package perf

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
)

// accepts records, per app, when the stand-in kept how many events.
type accepts struct {
	mu  sync.Mutex
	per map[string][]acceptAt
}

type acceptAt struct {
	at time.Time
	n  int
}

func (a *accepts) record(app string, evs []heaptest.Event) {
	a.mu.Lock()
	a.per[app] = append(a.per[app], acceptAt{time.Now(), len(evs)})
	a.mu.Unlock()
}

// pacing: the real emitter against the stand-in enforcing Heap's documented
// limits, every app backlogged for the whole run.
func (r *runner) pacing(ctx context.Context) error {
	prefix := runPrefix("pacing")
	topics, err := r.env.Topics(ctx, prefix)
	if err != nil {
		return err
	}
	srcs := perfSources("p", r.opts.PacingApps, false)
	path, err := r.env.WriteSources("pacing", srcs)
	if err != nil {
		return err
	}
	// Enough that no app runs dry: the run, the start-up, and a burst.
	perApp := int(float64(heap.AppEventsPerMin)*(r.opts.Pacing.Minutes()+0.5)) + 2000
	if err := r.env.produceEvents(ctx, topics, srcs, perApp); err != nil {
		return err
	}
	acc := &accepts{per: map[string][]acceptAt{}}
	sink := heaptest.NewSink(heaptest.OnAccept(acc.record)) // DocumentedLimits
	url, stopSink, err := serve(sink)
	if err != nil {
		return err
	}
	defer stopSink()
	c, err := r.env.Start("emitter", "emitter-paced", map[string]string{"SOURCES_FILE": path, "TOPIC_PREFIX": prefix, "HEAP_API_URL": url})
	if err != nil {
		return err
	}
	// Wait for the first delivery, then run for the set time.
	for sink.Stats().Accepted == 0 {
		if err := c.Exited(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(r.opts.Pacing):
	}
	rss, _ := c.Stop()
	r.rss["emitter (paced)"] = rss
	st := sink.Stats()
	// The sustained rate: after the first burst (one budget's worth at once).
	from := first.Add(min(10*time.Second, r.opts.Pacing/4))
	to := first.Add(r.opts.Pacing)
	var rates []float64
	acc.mu.Lock()
	for _, s := range srcs {
		rates = append(rates, ratePerMin(acc.per[s.HeapAppID], from, to))
	}
	acc.mu.Unlock()
	lo, hi := slices.Min(rates), slices.Max(rates)
	limit := float64(heap.AppEventsPerMin)
	r.add(Row{Stage: "pacing", Metric: "slowest app, sustained", Unit: "events/min", Figure: lo, Floor: limit,
		FloorIs: "Heap's documented limit of 15,000 events/min per app",
		Target:  ">= 95% of limit", Met: met(lo >= 0.95*limit),
		Note: fmt.Sprintf("%d apps backlogged at once for %s; rate measured from %s after the first delivery (the initial burst excluded); apps: %s events/min",
			len(srcs), r.opts.Pacing, from.Sub(first), fmtRates(rates))})
	r.add(Row{Stage: "pacing", Metric: "fairness (slowest/fastest app)", Unit: "", Figure: lo / hi, Target: ">= 0.95", Met: met(lo/hi >= 0.95)})
	r.add(Row{Stage: "pacing", Metric: "429s from the stand-in", Unit: "", Figure: float64(st.Throttled), Target: "0", Met: met(st.Throttled == 0),
		Note: fmt.Sprintf("%d requests, %d events", st.Requests, st.Accepted)})
	perReq := float64(st.Accepted) / float64(max(1, st.Requests))
	// Where the short requests were, when there were any.
	var short []string
	acc.mu.Lock()
	for app, as := range acc.per {
		for _, a := range as {
			if a.n < 500 {
				short = append(short, fmt.Sprintf("%s %d events at %+.1fs", app, a.n, a.at.Sub(first).Seconds()))
			}
		}
	}
	acc.mu.Unlock()
	slices.Sort(short)
	note := "no request under 500 events"
	if len(short) > 0 {
		note = fmt.Sprintf("%d requests under 500 events (time from the first delivery): %s", len(short), strings.Join(short, "; "))
	}
	r.add(Row{Stage: "pacing", Metric: "events per Heap request", Unit: "events", Figure: perReq, Target: ">= 500", Met: met(perReq >= 500), Note: note})
	return nil
}

// ratePerMin is events/min between the first and last request inside [from, to].
func ratePerMin(as []acceptAt, from, to time.Time) float64 {
	var in []acceptAt
	for _, a := range as {
		if !a.at.Before(from) && !a.at.After(to) {
			in = append(in, a)
		}
	}
	if len(in) < 2 {
		return 0
	}
	n := 0
	for _, a := range in[:len(in)-1] {
		n += a.n
	}
	return float64(n) / in[len(in)-1].at.Sub(in[0].at).Minutes()
}

func fmtRates(rs []float64) string {
	var b bytes.Buffer
	for i, r := range rs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.0f", r)
	}
	return b.String()
}
