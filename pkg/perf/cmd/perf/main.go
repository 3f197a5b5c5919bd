// Command perf is the harness behind `make bench` (see BENCHMARKS.md): it
// prints a table of each pipeline stage beside its floor and writes JSON.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/perf"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

func main() {
	// Re-executed as one of the services a stage runs.
	if perf.RunChild() {
		return
	}
	o := perf.DefaultOptions()
	stages := flag.String("stages", strings.Join(o.Stages, ","), "stages to run, in order: "+strings.Join(perf.AllStages, ","))
	out := flag.String("json", "bench.json", "where to write the JSON report")
	flag.IntVar(&o.Records, "records", o.Records, "mapper and emitter throughput backlog, in records")
	flag.IntVar(&o.Passes, "passes", o.Passes, "mapper and emitter passes, each the service and its floor; medians are reported")
	flag.IntVar(&o.MemoryRecords, "memory-records", o.MemoryRecords, "the memory stage's small backlog, in records")
	flag.IntVar(&o.MemoryFactor, "memory-factor", o.MemoryFactor, "the memory stage's large backlog is memory-records times this")
	flag.DurationVar(&o.Pacing, "pacing", envDuration("PERF_PACING", o.Pacing), "time at Heap's real limits (env PERF_PACING)")
	flag.IntVar(&o.PacingApps, "pacing-apps", o.PacingApps, "apps backlogged at once in the pacing stage")
	flag.DurationVar(&o.IngressFor, "ingress-for", o.IngressFor, "length of each ingress load run")
	flag.IntVar(&o.IngressConns, "ingress-conns", o.IngressConns, "concurrent audience-webhook senders")
	flag.IntVar(&o.MandrillConns, "mandrill-conns", o.MandrillConns, "concurrent Mandrill batch senders")
	flag.DurationVar(&o.E2EFor, "e2e-for", o.E2EFor, "time at the fixed end-to-end rate")
	flag.IntVar(&o.E2ERate, "e2e-rate", o.E2ERate, "end-to-end events/s")
	flag.Parse()
	o.Stages = strings.Split(*stages, ",")
	if dir := os.Getenv(perf.ProfileEnv); dir != "" {
		// The harness's own profile: kfake, the load generators, the stand-ins.
		if f, err := os.Create(filepath.Join(dir, "harness.cpu.pprof")); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, stop := service.SignalContext()
	defer stop()
	rep, err := perf.Run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s\n", *out)
	}
	if len(rep.Failures) > 0 {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func envDuration(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
