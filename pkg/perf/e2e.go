package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// e2e: ingress, mapper and emitter at a fixed rate; latency from sending a
// webhook to the Heap stand-in's 2xx for each of its events.
func (r *runner) e2e(ctx context.Context) error {
	prefix := runPrefix("e2e")
	if _, err := r.env.Topics(ctx, prefix); err != nil {
		return err
	}
	srcs := perfSources("e", r.opts.E2EApps, false)
	path, err := r.env.WriteSources("e2e", srcs)
	if err != nil {
		return err
	}
	lat := &latencies{sent: map[string]time.Time{}}
	sink := heaptest.NewSink(heaptest.WithLimits(heaptest.Limits{}), heaptest.OnAccept(lat.accepted))
	url, stopSink, err := serve(sink)
	if err != nil {
		return err
	}
	defer stopSink()
	port, err := freePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	vars := map[string]string{"SOURCES_FILE": path, "TOPIC_PREFIX": prefix, "HEAP_API_URL": url, "INGRESS_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}
	var children []*Child
	defer func() {
		for _, c := range children {
			rss, _ := c.Stop()
			r.rss[c.Name] = max(r.rss[c.Name], rss)
		}
	}()
	for _, role := range []string{"ingress", "mapper", "emitter"} {
		c, err := r.env.Start(role, role, vars)
		if err != nil {
			return err
		}
		children = append(children, c)
	}
	if err := r.e2eWarm(ctx, base, prefix, srcs[0], children[0], sink); err != nil {
		return err
	}
	per := r.e2eSend(ctx, base, srcs, lat)
	lat.drain(60 * time.Second)
	r.e2eRows(lat, per, len(srcs))
	return nil
}

// latencies are the e2e stage's measurements: when each identity's event
// was sent, how long each reached Heap after, and ingress's own answers.
type latencies struct {
	mu     sync.Mutex
	sent   map[string]time.Time
	lat    []time.Duration // send to the stand-in's 2xx, per event
	reqLat []time.Duration // ingress's answer time, per request
	fails  int
	total  int
}

// accepted is the stand-in's OnAccept: each event's latency from its send.
func (l *latencies) accepted(_ string, evs []heaptest.Event) {
	now := time.Now()
	l.mu.Lock()
	for _, e := range evs {
		if t, ok := l.sent[e.Identity]; ok {
			l.lat = append(l.lat, now.Sub(t))
		}
	}
	l.mu.Unlock()
}

// drain waits until every sent event has reached Heap, or within has passed.
func (l *latencies) drain(within time.Duration) {
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		l.mu.Lock()
		got := len(l.lat)
		l.mu.Unlock()
		if got >= l.total || time.Now().After(deadline) {
			return
		}
	}
}

// e2eWarm sends one event through the whole pipeline (group joins, first
// fetches) and waits for the mapper's group to be stable.
func (r *runner) e2eWarm(ctx context.Context, base, prefix string, src source.Source, ingress *Child, sink *heaptest.Sink) error {
	if err := WaitHTTP(ctx, base+"/healthz", ingress); err != nil {
		return err
	}
	warm, wsig := mandrillBody(src, [][]byte{mandrillEvent(0, "warmup@example.com", time.Now().Unix())})
	if err := postOnce(ctx, base, src, warm, wsig); err != nil {
		return err
	}
	for deadline := time.Now().Add(90 * time.Second); sink.Stats().Accepted == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("warm-up event never reached the Heap stand-in")
		}
	}
	// Steady state: the mapper's sessions may still be joining (the first
	// one to arrive can take every partition, and the rest move when the
	// others join); a rebalance is start-up, not latency.
	return r.env.waitGroup(ctx, prefix+"mapper", r.sessions())
}

// e2eSend is an open loop: a batch every tick whatever the answers, so a
// slow pipeline shows as latency, not as a lower rate. It returns the
// events per batch.
func (r *runner) e2eSend(ctx context.Context, base string, srcs []source.Source, l *latencies) int {
	const tick = 20 * time.Millisecond
	per := max(1, r.opts.E2ERate*int(tick)/int(time.Second))
	cl := newHTTPClient(64)
	defer cl.CloseIdleConnections()
	var wg sync.WaitGroup
	t := time.NewTicker(tick)
	end := time.Now().Add(r.opts.E2EFor)
	total := 0
	for i := 0; time.Now().Before(end); i++ {
		<-t.C
		src := srcs[i%len(srcs)]
		evs := make([][]byte, per)
		emails := make([]string, per)
		for j := range evs {
			emails[j] = fmt.Sprintf("e2e%d@example.com", total+j)
			evs[j] = mandrillEvent(total+j, emails[j], time.Now().Unix())
		}
		total += per
		body, sig := mandrillBody(src, evs)
		wg.Go(func() { l.post(ctx, cl, base, src, body, sig, emails) })
	}
	t.Stop()
	wg.Wait()
	l.mu.Lock()
	l.total = total
	l.mu.Unlock()
	return per
}

// post sends one batch, noting its events' send time and ingress's answer.
func (l *latencies) post(ctx context.Context, cl *http.Client, base string, src source.Source, body []byte, sig string, emails []string) {
	req, _ := mandrillRequest(base, src, body, sig)
	now := time.Now()
	l.mu.Lock()
	for _, e := range emails {
		l.sent[e] = now
	}
	l.mu.Unlock()
	resp, err := cl.Do(req.WithContext(ctx))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fails++
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		l.fails++
		return
	}
	l.reqLat = append(l.reqLat, time.Since(now))
}

// e2eRows reports the latencies beside ingress's own answer times.
func (r *runner) e2eRows(l *latencies, per, apps int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p50, p99 := percentile(l.lat, 0.5), percentile(l.lat, 0.99)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	note := fmt.Sprintf("%d events/s as %d-event Mandrill batches over %d apps for %s; %d of %d events reached Heap; %d requests failed; paced emitter, Heap stand-in unlimited",
		r.opts.E2ERate, per, apps, r.opts.E2EFor, len(l.lat), l.total, l.fails)
	r.add(Row{Stage: "e2e", Metric: "latency p50", Unit: "ms", Figure: ms(p50), Floor: ms(percentile(l.reqLat, 0.5)),
		FloorIs: "ingress's own answer time (Kafka ack) for the same requests, p50", Note: note})
	r.add(Row{Stage: "e2e", Metric: "latency p99", Unit: "ms", Figure: ms(p99), Floor: ms(percentile(l.reqLat, 0.99)),
		FloorIs: "ingress's own answer time for the same requests, p99", Target: "< 500 ms", Met: met(p99 < 500*time.Millisecond && len(l.lat) >= l.total)})
}

// postOnce posts one signed Mandrill batch and wants a 200.
func postOnce(ctx context.Context, base string, s source.Source, body []byte, sig string) error {
	req, err := mandrillRequest(base, s, body, sig)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("ingress: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}
