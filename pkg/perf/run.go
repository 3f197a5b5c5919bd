package perf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
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

// runner runs one stage after another on the shared Env. Each stage lives
// in the file named for it (mapper.go, emitter.go, pacing.go, ingress.go,
// e2e.go, memory.go): it measures the service beside its floor and adds
// its rows; a stage's error is recorded and the next stage still runs.
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
