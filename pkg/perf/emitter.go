package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
)

// emitter: the emitter service (pacing off) draining each mapper pass's
// output into an unlimited Heap stand-in, then the same bodies posted.
func (r *runner) emitter(ctx context.Context) error {
	if len(r.mapperRuns) == 0 {
		return errors.New("needs the mapper stage's output: run it too")
	}
	n := int64(r.opts.Records)
	var rates, floors []float64
	var st heaptest.Stats
	for pass, run := range r.mapperRuns {
		rate, rss, stats, sink, err := r.runEmitter(ctx, run.prefix, run.sources, n, fmt.Sprintf("emitter-%d", pass))
		if err != nil {
			return err
		}
		r.rss["emitter"] = max(r.rss["emitter"], rss)
		floor, err := postFloor(ctx, sink.Accepted())
		if err != nil {
			return fmt.Errorf("emitter floor: %w", err)
		}
		fmt.Fprintf(r.out, "perf:   emitter pass %d: %s events/s, floor %s (%.0f%%)\n", pass+1, num(rate), num(floor), 100*rate/floor)
		rates, floors = append(rates, rate), append(floors, floor)
		st.Accepted, st.Duplicates, st.Requests = st.Accepted+stats.Accepted, st.Duplicates+stats.Duplicates, st.Requests+stats.Requests
	}
	rate, floor := median(rates), median(floors)
	perReq := float64(st.Accepted+st.Duplicates) / float64(st.Requests)
	r.add(Row{Stage: "emitter", Metric: "throughput", Unit: "events/s", Figure: rate, Floor: floor,
		FloorIs: "one goroutine per app posting the same events as pre-encoded 1000-event bulk bodies to the same stand-in",
		Target:  ">= 70% of floor", Met: met(rate >= 0.7*floor),
		Note: fmt.Sprintf("medians of %d passes, each the emitter then its floor on one mapper pass's %d events; Heap stand-in with limits off and the emitter's pacer off (the pacing stage measures pacing); Redis ledger on; pass ratios %s",
			len(rates), n, ratios(rates, floors))})
	r.add(Row{Stage: "emitter", Metric: "events per Heap request", Unit: "events", Figure: perReq,
		Target: ">= 500", Met: met(perReq >= 500), Note: fmt.Sprintf("%d requests for %d events, backlogged", st.Requests, st.Accepted+st.Duplicates)})
	return nil
}

func (r *runner) runEmitter(ctx context.Context, prefix, sources string, n int64, name string) (float64, int64, heaptest.Stats, *heaptest.Sink, error) {
	sink := heaptest.NewSink(heaptest.WithLimits(heaptest.Limits{}))
	url, stopSink, err := serve(sink)
	if err != nil {
		return 0, 0, heaptest.Stats{}, nil, err
	}
	defer stopSink()
	c, err := r.env.Start("emitter-unpaced", name, map[string]string{"SOURCES_FILE": sources, "TOPIC_PREFIX": prefix, "HEAP_API_URL": url})
	if err != nil {
		return 0, 0, heaptest.Stats{}, nil, err
	}
	rate, err := throughput(ctx, func() (int64, error) { st := sink.Stats(); return int64(st.Accepted + st.Duplicates), nil },
		n, time.Duration(n/200)*time.Second+90*time.Second, c.Exited, nil)
	rss, _ := c.Stop()
	return rate.First, rss, sink.Stats(), sink, err
}

// postFloor posts evs as pre-encoded 1000-event bodies, one sender per app.
func postFloor(ctx context.Context, acc []heaptest.Accepted) (float64, error) {
	byApp := map[string][]heaptest.Event{}
	for _, a := range acc {
		byApp[a.AppID] = append(byApp[a.AppID], a.Event)
	}
	bodies := map[string][][]byte{}
	for app, evs := range byApp {
		for chunk := range slices.Chunk(evs, heap.MaxBatch) {
			b, err := json.Marshal(heaptest.Request{AppID: app, Events: chunk})
			if err != nil {
				return 0, err
			}
			bodies[app] = append(bodies[app], b)
		}
	}
	url, stop, err := serve(heaptest.NewSink(heaptest.WithLimits(heaptest.Limits{})))
	if err != nil {
		return 0, err
	}
	defer stop()
	cl := newHTTPClient(len(bodies))
	defer cl.CloseIdleConnections()
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	var wg sync.WaitGroup
	for _, bs := range bodies {
		wg.Go(func() {
			for _, b := range bs {
				resp, err := cl.Post(url+heap.TrackPath, "application/json", bytes.NewReader(b))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(len(acc)) / time.Since(start).Seconds(), firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
