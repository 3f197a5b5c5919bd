package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
)

// Options size a run. The defaults keep `make bench` under ten minutes on 2 cores.
type Options struct {
	Stages        []string      `json:"stages"`
	Records       int           `json:"records"`        // mapper and emitter throughput backlog
	Passes        int           `json:"passes"`         // mapper and emitter passes (see passes)
	MemoryRecords int           `json:"memory_records"` // the memory stage's small backlog
	MemoryFactor  int           `json:"memory_factor"`  // the memory stage's large backlog is MemoryRecords × this
	Pacing        time.Duration `json:"pacing"`         // time at Heap's real limits
	PacingApps    int           `json:"pacing_apps"`    // apps backlogged at once
	IngressFor    time.Duration `json:"ingress_for"`    // per ingress load run
	IngressConns  int           `json:"ingress_conns"`  // concurrent webhook senders
	E2EFor        time.Duration `json:"e2e_for"`        // time at the fixed rate
	E2ERate       int           `json:"e2e_rate"`       // events/s into ingress
	E2EApps       int           `json:"e2e_apps"`       // apps the rate is spread over
	MandrillBatch int           `json:"mandrill_batch"` // events per Mandrill webhook
	MandrillConns int           `json:"mandrill_conns"` // concurrent Mandrill senders
}

// AllStages in the order they run.
var AllStages = []string{"mapper", "emitter", "pacing", "ingress", "e2e", "memory"}

// DefaultOptions are `make bench`'s.
func DefaultOptions() Options {
	return Options{Stages: AllStages, Records: 300000, Passes: 5, MemoryRecords: 60000, MemoryFactor: 10, Pacing: 2 * time.Minute, PacingApps: 10,
		IngressFor: 5 * time.Second, IngressConns: 32, E2EFor: 15 * time.Second, E2ERate: 5000, E2EApps: 25,
		MandrillBatch: 1000, MandrillConns: 4}
}

type runner struct {
	env  *Env
	opts Options
	out  io.Writer
	rep  *Report
	// peak RSS per service and backlog, from the stages that ran them
	rss map[string]int64
	// the mapper stage's passes, whose output the emitter stage drains
	mapperRuns []mapperRun
}

// mapperRun is one pass of the mapper stage: its topics and sources.
type mapperRun struct {
	prefix, sources string
}

// runPrefix names a stage's topics and groups for this run: on a real
// broker an earlier run's topics and committed offsets stay behind.
func runPrefix(stage string) string { return "perf-" + runID + "-" + stage + "." }

// sessions is how many sessions the mapper runs: config's default
// MAPPER_SESSIONS unless the harness's environment, which its children
// inherit, says otherwise.
func (r *runner) sessions() int {
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		return 1
	}
	return env.MapperSessions
}

// passes is how many times the mapper and emitter stages measure the
// service and its floor, one after the other on fresh topics: machines this
// small drift by tens of percent between seconds, and interleaving keeps a
// drift from landing on one side only. The medians are reported.
func (r *runner) passes() int { return max(1, r.opts.Passes) }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

func ratios(figures, floors []float64) string {
	var parts []string
	for i := range figures {
		parts = append(parts, fmt.Sprintf("%.0f%%", 100*figures[i]/floors[i]))
	}
	return strings.Join(parts, ", ")
}

// Run runs the stages and returns the report; a failing stage is recorded
// and the others still run.
func Run(ctx context.Context, opts Options, out io.Writer) (*Report, error) {
	start := time.Now()
	env, err := Setup(ctx)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	r := &runner{env: env, opts: opts, out: out, rss: map[string]int64{},
		rep: &Report{Started: start.UTC(), Machine: machine(), Kafka: env.KafkaDesc, Redis: env.RedisDesc, Options: opts}}
	fmt.Fprintf(out, "perf: kafka: %s\nperf: redis: %s\n", env.KafkaDesc, env.RedisDesc)
	stages := map[string]func(context.Context) error{
		"mapper": r.mapper, "emitter": r.emitter, "pacing": r.pacing, "ingress": r.ingress, "e2e": r.e2e, "memory": r.memory,
	}
	for _, name := range AllStages {
		if !slices.Contains(opts.Stages, name) {
			continue
		}
		t := time.Now()
		fmt.Fprintf(out, "perf: stage %s...\n", name)
		if err := stages[name](ctx); err != nil {
			fmt.Fprintf(out, "perf: stage %s failed: %v\n", name, err)
			r.rep.Failures = append(r.rep.Failures, name+": "+err.Error())
		} else {
			fmt.Fprintf(out, "perf: stage %s done in %s\n", name, time.Since(t).Round(time.Second))
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.memoryRows()
	r.rep.Seconds = time.Since(start).Seconds()
	return r.rep, nil
}

func (r *runner) add(row Row) {
	if row.Floor != 0 {
		row.Ratio = row.Figure / row.Floor
	}
	r.rep.Rows = append(r.rep.Rows, row)
	fmt.Fprintf(r.out, "perf:   %s %s = %s %s (floor %s)\n", row.Stage, row.Metric, num(row.Figure), row.Unit, num(row.Floor))
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// mapper: the real mapper service vs a bare transactional copy loop, each
// on the same fresh backlog, passes times.
func (r *runner) mapper(ctx context.Context) error {
	n := int64(r.opts.Records)
	sessions := r.sessions()
	var rates, firsts, floors, floorsN []float64
	var settle []string
	for pass := range r.passes() {
		prefix := runPrefix(fmt.Sprintf("mapper%d", pass))
		topics, err := r.env.Topics(ctx, prefix)
		if err != nil {
			return err
		}
		// Apps of the pass's own: every event is new to the emitter's ledger.
		srcs := perfSources(fmt.Sprintf("p%ds", pass), 4, true)
		path, err := r.env.WriteSources(fmt.Sprintf("mapper-%d", pass), srcs)
		if err != nil {
			return err
		}
		if err := r.env.seedRedis(ctx, srcs, emailCount(int(n))); err != nil {
			return err
		}
		if err := r.env.produceRaw(ctx, topics.Raw, srcs, int(n)); err != nil {
			return err
		}
		floor, err := r.copyFloor(ctx, topics.Raw, prefix, n, 1)
		if err != nil {
			return fmt.Errorf("copy floor: %w", err)
		}
		floorN := floor // one session: the same loop
		if sessions > 1 {
			if floorN, err = r.copyFloor(ctx, topics.Raw, prefix, n, sessions); err != nil {
				return fmt.Errorf("copy floor, %d sessions: %w", sessions, err)
			}
		}
		dr, rss, err := r.runMapper(ctx, prefix, path, topics, n, fmt.Sprintf("mapper-%d", pass))
		if err != nil {
			return err
		}
		rate := dr.Steady
		s := fmt.Sprintf("%.2f s", dr.SteadyAfter.Seconds())
		if dr.NeverSteady {
			s = "never (done first)"
		}
		fmt.Fprintf(r.out, "perf:   mapper pass %d: %s events/s steady (group stable %s after the first commit; %s from it), floor %s (%.0f%%), %d-session floor %s (%.0f%%)\n",
			pass+1, num(rate), s, num(dr.First), num(floor), 100*rate/floor, sessions, num(floorN), 100*rate/floorN)
		rates, firsts, floors, floorsN = append(rates, rate), append(firsts, dr.First), append(floors, floor), append(floorsN, floorN)
		settle = append(settle, s)
		r.rss["mapper"] = max(r.rss["mapper"], rss)
		r.mapperRuns = append(r.mapperRuns, mapperRun{prefix, path})
	}
	rate, floor := median(rates), median(floors)
	r.add(Row{Stage: "mapper", Metric: "throughput", Unit: "events/s", Figure: rate, Floor: floor,
		FloorIs: fmt.Sprintf("bare GroupTransactSession copy loop (read_committed, %d records per transaction as the mapper's, flushed) of the same records on the same broker", mapper.DefaultMaxPoll),
		Target:  ">= 40% of floor", Met: met(rate >= 0.4*floor),
		Note: fmt.Sprintf("medians of %d passes, each the floor then the mapper on %d fresh raw records (3 Mandrill events : 1 audience webhook, 4 sources joining on a custom property: identities and campaign titles from Redis), counted once its group is stable with its %d sessions (stable after the first commit: %s); pass ratios %s",
			r.passes(), n, sessions, strings.Join(settle, ", "), ratios(rates, floors))})
	first := median(firsts)
	r.add(Row{Stage: "mapper", Metric: "throughput from the first commit", Unit: "events/s", Figure: first, Floor: floor,
		FloorIs: "the same one-session copy loop", Target: "-",
		Note: fmt.Sprintf("the same passes counted from the mapper's first commit, its sessions' start-up rebalance included; pass ratios %s", ratios(firsts, floors))})
	if sessions == 1 {
		return nil // the row above is like for like
	}
	floorN := median(floorsN)
	r.add(Row{Stage: "mapper", Metric: fmt.Sprintf("throughput vs %d copy sessions", sessions), Unit: "events/s", Figure: rate, Floor: floorN,
		FloorIs: fmt.Sprintf("the same copy loop in %d sessions of one group, as the mapper runs (MAPPER_SESSIONS)", sessions),
		Target:  "-",
		Note:    fmt.Sprintf("like for like: the issue's floor is one session; pass ratios %s", ratios(rates, floorsN))})
	return nil
}

// runMapper runs the mapper over the backlog. Its steady rate counts from
// when its group is stable with all its sessions holding partitions: the
// sessions join one after another, and on kfake (no initial rebalance
// delay) the second one's join is a rebalance of ~1 s, a good part of a
// 300k-record run and not the mapper's throughput.
func (r *runner) runMapper(ctx context.Context, prefix, sources string, topics kafka.Topics, n int64, name string) (drainRate, int64, error) {
	c, err := r.env.Start("mapper", name, map[string]string{"SOURCES_FILE": sources, "TOPIC_PREFIX": prefix})
	if err != nil {
		return drainRate{}, 0, err
	}
	var stable atomic.Bool
	waitCtx, stopWait := context.WithCancel(ctx)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		if r.env.waitGroup(waitCtx, prefix+"mapper", r.sessions()) == nil {
			stable.Store(true)
		}
	}()
	rate, err := throughput(ctx, func() (int64, error) { return r.env.committed(ctx, prefix+"mapper", topics.Raw) },
		n, time.Duration(n/200)*time.Second+90*time.Second, c.Exited, stable.Load)
	stopWait()
	<-waited
	rss, _ := c.Stop()
	return rate, rss, err
}

// copyFloor is a bare copy loop over the raw records in sessions
// GroupTransactSessions of one group, each with a transactional id of its
// own, as the mapper runs its sessions. The loops time themselves (a pass
// over in-process kfake takes a fraction of a second, too short for the
// 25 ms progress polls the services are measured with): records/s committed
// from the first commit until all n are.
func (r *runner) copyFloor(ctx context.Context, raw, prefix string, n int64, sessions int) (float64, error) {
	out := fmt.Sprintf("%sperf.copy%d", prefix, sessions)
	if _, err := r.env.Admin.CreateTopic(ctx, Partitions, -1, nil, out); err != nil {
		return 0, err
	}
	group := fmt.Sprintf("%scopy%d", prefix, sessions)
	loopCtx, cancel := context.WithTimeout(ctx, time.Duration(n/500)*time.Second+60*time.Second)
	defer cancel()
	var c copied
	c.total = n
	errs := make(chan error, sessions)
	for i := range sessions {
		var once sync.Once
		assigned := kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			once.Do(func() { c.joined(sessions) })
		})
		sess, err := kgo.NewGroupTransactSession(append(r.env.Conn.Opts("floor"), assigned,
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(raw), kgo.TransactionalID(fmt.Sprintf("%s-%d", group, i)),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.TransactionTimeout(60*time.Second), kgo.SessionTimeout(15*time.Second))...)
		if err != nil {
			return 0, err
		}
		defer sess.Close()
		go func() { errs <- copyLoop(loopCtx, sess, out, &c) }()
	}
	for range sessions {
		if err := <-errs; err != nil && !c.finished() {
			return 0, err
		}
		cancel() // all copied: the other loops stop
	}
	return c.rate()
}

// copied is the copy loops' shared count. The clock starts at the first
// commit once every session has partitions: a join's rebalance is not the
// loop's throughput.
type copied struct {
	mu     sync.Mutex
	total  int64
	n, n0  int64
	t0, t1 time.Time
	joins  int
	stable bool
}

// joined notes a session's first assignment.
func (c *copied) joined(sessions int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.joins++
	c.stable = c.joins == sessions
}

// add counts a committed transaction and reports whether all are copied.
func (c *copied) add(k int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(k)
	if c.t0.IsZero() && c.stable {
		c.t0, c.n0 = time.Now(), c.n
	}
	if c.n >= c.total && c.t1.IsZero() {
		c.t1 = time.Now()
	}
	return c.n >= c.total
}

func (c *copied) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.t1.IsZero()
}

func (c *copied) rate() (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t0.IsZero() || c.n == c.n0 {
		return 0, fmt.Errorf("all %d copied before a second committed transaction of the whole group: raise the record count", c.total)
	}
	return float64(c.n-c.n0) / c.t1.Sub(c.t0).Seconds(), nil
}

// copyLoop is the mapper's loop with the work taken out: every record is
// copied as it is, in the same transaction as its offset, flushed as the
// mapper flushes, until c says all are copied.
func copyLoop(ctx context.Context, sess *kgo.GroupTransactSession, out string, c *copied) error {
	for {
		fs := sess.PollRecords(ctx, mapper.DefaultMaxPoll)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy loop: %w", err)
		}
		if fs.IsClientClosed() {
			return errors.New("client closed")
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		promise := kgo.AbortingFirstErrPromise(sess.Client())
		for _, rec := range recs {
			sess.Produce(ctx, &kgo.Record{Topic: out, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}, promise.Promise())
		}
		err := sess.Client().Flush(ctx)
		if perr := promise.Err(); perr != nil {
			err = perr
		}
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		committed, endErr := sess.End(endCtx, kgo.TransactionEndTry(err == nil))
		cancel()
		if endErr != nil {
			return endErr
		}
		if committed && c.add(len(recs)) {
			return nil
		}
	}
}

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

// produceEvents writes perApp mapped events per source to heap.events, apps
// interleaved, 200 identities per app (Heap's per-identity limit is 1,000/min).
func (e *Env) produceEvents(ctx context.Context, topics kafka.Topics, srcs []config.Source, perApp int) error {
	codec, err := events.NewCodec()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := make([]*kgo.Record, 0, 5000)
	for k := range perApp {
		for _, s := range srcs {
			ident := email(k % 200)
			ev := events.Event{ID: events.ID(s.HeapAppID, "perf", fmt.Sprint(k)), SourceID: s.ID, AppID: s.HeapAppID,
				Identity: ident, EmailKey: events.EmailKey(ident), Name: events.NameOpen, Time: now,
				CampaignID: "c0001", CampaignTitle: "October product update", ListID: "7c1e5d2a90", IP: "192.0.2.44",
				Lineage: events.Lineage{Topic: topics.Raw, Offset: int64(k), Kind: mailchimp.KindMandrillEvent, ReceivedAt: now}}
			val, err := codec.Encode(ev)
			if err != nil {
				return err
			}
			batch = append(batch, &kgo.Record{Topic: topics.Events, Key: ev.Key(), Value: val, Headers: []kgo.RecordHeader{
				{Key: kafka.HeaderSource, Value: []byte(ev.SourceID)},
				{Key: kafka.HeaderEventID, Value: []byte(ev.ID)},
				{Key: kafka.HeaderEventName, Value: []byte(ev.Name)},
			}})
			if len(batch) == cap(batch) {
				if err := e.Kafka.ProduceSync(ctx, batch...).FirstErr(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	return e.Kafka.ProduceSync(ctx, batch...).FirstErr()
}

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
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	sink := heaptest.NewSink(heaptest.WithLimits(heaptest.Limits{}), heaptest.OnAccept(func(app string, evs []heaptest.Event) {
		now := time.Now()
		mu.Lock()
		for _, e := range evs {
			if t, ok := sent[e.Identity]; ok {
				lat = append(lat, now.Sub(t))
			}
		}
		mu.Unlock()
	}))
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
	if err := WaitHTTP(ctx, base+"/healthz", children[0]); err != nil {
		return err
	}
	// Warm up: one event through the whole pipeline (group joins, first fetches).
	warm, wsig := mandrillBody(srcs[0], [][]byte{mandrillEvent(0, "warmup@example.com", time.Now().Unix())})
	if err := postOnce(ctx, base, srcs[0], warm, wsig); err != nil {
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
	if err := r.env.waitGroup(ctx, prefix+"mapper", r.sessions()); err != nil {
		return err
	}
	// Open loop: a batch every tick whatever the answers, so a slow pipeline
	// shows as latency, not as a lower rate.
	const tick = 20 * time.Millisecond
	per := max(1, r.opts.E2ERate*int(tick)/int(time.Second))
	cl := newHTTPClient(64)
	defer cl.CloseIdleConnections()
	var reqLat []time.Duration
	var fails int
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
		wg.Go(func() {
			req, _ := mandrillRequest(base, src, body, sig)
			now := time.Now()
			mu.Lock()
			for _, e := range emails {
				sent[e] = now
			}
			mu.Unlock()
			resp, err := cl.Do(req.WithContext(ctx))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails++
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				fails++
				return
			}
			reqLat = append(reqLat, time.Since(now))
		})
	}
	t.Stop()
	wg.Wait()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		if got >= total || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	note := fmt.Sprintf("%d events/s as %d-event Mandrill batches over %d apps for %s; %d of %d events reached Heap; %d requests failed; paced emitter, Heap stand-in unlimited",
		r.opts.E2ERate, per, len(srcs), r.opts.E2EFor, len(lat), total, fails)
	r.add(Row{Stage: "e2e", Metric: "latency p50", Unit: "ms", Figure: ms(p50), Floor: ms(percentile(reqLat, 0.5)),
		FloorIs: "ingress's own answer time (Kafka ack) for the same requests, p50", Note: note})
	r.add(Row{Stage: "e2e", Metric: "latency p99", Unit: "ms", Figure: ms(p99), Floor: ms(percentile(reqLat, 0.99)),
		FloorIs: "ingress's own answer time for the same requests, p99", Target: "< 500 ms", Met: met(p99 < 500*time.Millisecond && len(lat) >= total)})
	return nil
}

func postOnce(ctx context.Context, base string, s config.Source, body []byte, sig string) error {
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
