package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Main runs one service process: configuration from the environment and
// SOURCES_FILE, a JSON logger, shared deps, then run under a context that
// SIGINT/SIGTERM cancels. It exits non-zero on failure.
func Main(name string, run func(ctx context.Context, d *Deps) error) {
	if err := main(name, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// gcPercent is a service's GOGC when its environment sets none. The
// emitter's heap is bounded (its queues, a fetch, a few arenas) and small,
// and it allocates for every event it delivers: 150 trades a little peak
// memory for fewer collections, and stays under the memory target where
// 200 did not (BENCHMARKS.md has the measurements).
var gcPercent = map[string]int{"emitter": 150}

// setGC applies name's gcPercent unless GOGC is set.
func setGC(name string) {
	if p, ok := gcPercent[name]; ok && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(p)
	}
}

// setMemoryLimit gives ingress, unless GOMEMLIMIT is set, a soft memory
// limit of twice its body budget (INGRESS_MAX_INFLIGHT_BYTES): what
// outsiders can make it hold is that budget, and the collector then keeps
// the garbage of bodies already answered from piling up on top of it
// under a flood.
func setMemoryLimit(name string, env config.Env) {
	if name == "ingress" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(2 * env.IngressMaxInflight)
	}
}

func main(name string, run func(ctx context.Context, d *Deps) error) error {
	setGC(name)
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	setMemoryLimit(name, env)
	if env.SourcesFile == "" {
		return errors.New("SOURCES_FILE is required")
	}
	sources, err := source.Load(env.SourcesFile)
	if err != nil {
		return err
	}
	log, err := NewLogger(env.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	log = log.With(zap.String("service", name))
	ctx, stop := SignalContext()
	defer stop()
	d, err := Open(ctx, env, sources, log, env.KafkaBrokers, name)
	if err != nil {
		return err
	}
	defer d.Close()
	log.Info("started", zap.Int("sources", len(sources.All())))
	err = run(ctx, d)
	log.Info("stopped", zap.Error(err))
	return err
}

// Group runs fns until the first fails or ctx ends; it returns the first error.
func Group(ctx context.Context, fns ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, fn := range fns {
		g.Go(func() error { return fn(ctx) })
	}
	return g.Wait()
}

// ServeAdmin serves Admin(d) on ADMIN_ADDR until ctx ends.
func ServeAdmin(ctx context.Context, d *Deps) error {
	ln, err := net.Listen("tcp", d.Env.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return Serve(ctx, ln, Admin(d), d.Log)
}
