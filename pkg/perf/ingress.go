package perf

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// ingress: the ingress service vs a bare net/http handler, same load.
func (r *runner) ingress(ctx context.Context) error {
	prefix := runPrefix("ingress")
	if _, err := r.env.Topics(ctx, prefix); err != nil {
		return err
	}
	srcs := perfSources("i", 1, false)
	src := srcs[0]
	path, err := r.env.WriteSources("ingress", srcs)
	if err != nil {
		return err
	}
	evs := make([][]byte, r.opts.MandrillBatch)
	for i := range evs {
		evs[i] = mandrillEvent(i, email(i%perfEmails), time.Now().Unix())
	}
	body, sig := mandrillBody(src, evs)
	load := func(role, name string, vars map[string]string) (list, mandrill loadResult, rss int64, err error) {
		port, err := freePort()
		if err != nil {
			return
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		vars["INGRESS_ADDR"] = fmt.Sprintf("127.0.0.1:%d", port)
		c, err := r.env.Start(role, name, vars)
		if err != nil {
			return
		}
		defer func() {
			rss, _ = c.Stop()
		}()
		if err = WaitHTTP(ctx, base+"/healthz", c); err != nil {
			return
		}
		i := 0
		if list, err = closedLoop(ctx, r.opts.IngressConns, r.opts.IngressFor, func() (*http.Request, error) {
			i++ // only the fixture's shape matters; a data race on i would not
			return listRequest(base, src, i)
		}); err != nil {
			return
		}
		mandrill, err = closedLoop(ctx, r.opts.MandrillConns, r.opts.IngressFor, func() (*http.Request, error) { return mandrillRequest(base, src, body, sig) })
		return
	}
	// Passes as the mapper's and emitter's: the floor, then ingress, each
	// pass, so a drift of the machine lands on both sides.
	var fl, fm, il, im loadResult
	var lists, listFloors, mandrills, mandrillFloors []float64
	for pass := range r.passes() {
		pfl, pfm, _, err := load("bare-http", fmt.Sprintf("bare-http-%d", pass), map[string]string{})
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		pil, pim, rss, err := load("ingress", fmt.Sprintf("ingress-%d", pass), map[string]string{"SOURCES_FILE": path, "TOPIC_PREFIX": prefix})
		if err != nil {
			return err
		}
		r.rss["ingress"] = max(r.rss["ingress"], rss)
		lists, listFloors = append(lists, pil.perSec()), append(listFloors, pfl.perSec())
		mandrills, mandrillFloors = append(mandrills, pim.perSec()), append(mandrillFloors, pfm.perSec())
		fl, fm, il, im = fl.add(pfl), fm.add(pfm), il.add(pil), im.add(pim)
	}
	list, listFloor := median(lists), median(listFloors)
	r.add(Row{Stage: "ingress", Metric: "audience webhooks", Unit: "req/s", Figure: list, Floor: listFloor,
		FloorIs: "a bare net/http handler that reads the body and answers 200, in its own process, under the same load generator",
		Target:  ">= 50% of floor", Met: met(list >= 0.5*listFloor),
		Note: fmt.Sprintf("medians of %d passes, each the floor then ingress; %d concurrent senders for %s; every 2xx after Kafka acks=all; p99 %s (floor p99 %s); %s; pass ratios %s",
			r.passes(), r.opts.IngressConns, r.opts.IngressFor, percentile(il.lat, 0.99).Round(time.Millisecond), percentile(fl.lat, 0.99).Round(time.Millisecond), il.failed(),
			ratios(lists, listFloors))})
	batch := float64(r.opts.MandrillBatch)
	r.add(Row{Stage: "ingress", Metric: fmt.Sprintf("Mandrill batches of %d", r.opts.MandrillBatch), Unit: "events/s",
		Figure: median(mandrills) * batch, Floor: median(mandrillFloors) * batch, FloorIs: "the same bodies to the bare handler",
		Target: ">= 100000", Met: met(median(mandrills)*batch >= 100000),
		Note: fmt.Sprintf("medians of the same passes; %d concurrent senders, signed batches, each event one mailchimp.raw record; p99 %s; %s",
			r.opts.MandrillConns, percentile(im.lat, 0.99).Round(time.Millisecond), im.failed())})
	return nil
}
