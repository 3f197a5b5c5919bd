package perf

import (
	"context"
	"fmt"
)

// memory: mapper and emitter on a small backlog, then on one MemoryFactor
// times larger, each on topics and apps of its own (new events to the ledger).
func (r *runner) memory(ctx context.Context) error {
	for _, size := range []struct {
		prefix, tag string
		n           int64
		x           int
	}{
		{runPrefix("memory1"), "n", int64(r.opts.MemoryRecords), 1},
		{runPrefix("memory"), "m", int64(r.opts.MemoryRecords * r.opts.MemoryFactor), r.opts.MemoryFactor},
	} {
		topics, err := r.env.Topics(ctx, size.prefix)
		if err != nil {
			return err
		}
		srcs := perfSources(size.tag, 4, true)
		path, err := r.env.WriteSources(fmt.Sprintf("memory-%dx", size.x), srcs)
		if err != nil {
			return err
		}
		n := size.n
		if err := r.env.seedRedis(ctx, srcs, emailCount(int(n))); err != nil {
			return err
		}
		if err := r.env.produceRaw(ctx, topics.Raw, srcs, int(n)); err != nil {
			return err
		}
		rate, rss, err := r.runMapper(ctx, size.prefix, path, topics, n, fmt.Sprintf("mapper-%dx", size.x))
		if err != nil {
			return err
		}
		r.rss[fmt.Sprintf("mapper-%dx", size.x)] = rss
		fmt.Fprintf(r.out, "perf:   mapper on %d records: %.0f events/s\n", n, rate.Steady)
		erate, erss, _, _, err := r.runEmitter(ctx, size.prefix, path, n, fmt.Sprintf("emitter-%dx", size.x))
		if err != nil {
			return err
		}
		r.rss[fmt.Sprintf("emitter-%dx", size.x)] = erss
		fmt.Fprintf(r.out, "perf:   emitter on %d events: %.0f events/s\n", n, erate)
	}
	return nil
}

// memoryRows reports each service's peak RSS, and the large backlog's beside the small.
func (r *runner) memoryRows() {
	mb := func(b int64) float64 { return float64(b) / (1 << 20) }
	x := r.opts.MemoryFactor
	for _, svc := range []string{"mapper", "emitter"} {
		big, small := r.rss[fmt.Sprintf("%s-%dx", svc, x)], r.rss[svc+"-1x"]
		if big == 0 {
			continue
		}
		// The throughput stage's run counts against 200 MB too.
		ok := mb(max(big, r.rss[svc])) < 200 && (small == 0 || float64(big) <= 1.5*float64(small))
		note := ""
		if v := r.rss[svc]; v != 0 {
			note = fmt.Sprintf("in the throughput stage (%d records): %.0f MB", r.opts.Records, mb(v))
		}
		r.add(Row{Stage: "memory", Metric: fmt.Sprintf("%s peak RSS, %dx backlog", svc, x), Unit: "MB", Figure: mb(big), Floor: mb(small),
			FloorIs: fmt.Sprintf("the same service's peak RSS on a %d-record backlog", r.opts.MemoryRecords),
			Target:  "< 200 MB, <= 1.5x floor", Met: met(ok), Note: note})
	}
	for _, svc := range []string{"ingress", "emitter (paced)"} {
		if v := r.rss[svc]; v != 0 {
			r.add(Row{Stage: "memory", Metric: svc + " peak RSS", Unit: "MB", Figure: mb(v), Target: "< 200 MB", Met: met(mb(v) < 200)})
		}
	}
}
