package perf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

// RoleEnv names the service a re-executed harness process runs.
const RoleEnv = "PERF_ROLE"

// ProfileEnv, when set, is a directory where each service process writes a
// CPU profile and, at exit, a heap profile (read with go tool pprof).
const ProfileEnv = "PERF_PROFILE_DIR"

// TraceEnv, set with ProfileEnv, adds an execution trace of each service
// process (go tool trace): where a stage waits rather than computes.
const TraceEnv = "PERF_TRACE"

func profile(dir, name string) (stop func()) {
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		return func() {}
	}
	pprof.StartCPUProfile(f)
	var tf *os.File
	if os.Getenv(TraceEnv) != "" {
		if tf, err = os.Create(filepath.Join(dir, name+".trace")); err == nil {
			trace.Start(tf)
		}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if tf != nil {
			trace.Stop()
			tf.Close()
		}
		if h, err := os.Create(filepath.Join(dir, name+".heap.pprof")); err == nil {
			pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
	}
}

// RunChild runs the role named in RoleEnv and reports whether there was one.
// Each role is its service's process: service.Main's configuration, logger
// and deps; ingress is service.Ingress, mapper and emitter run their loops
// as service.MapperConfig and service.EmitterConfig build them, changing
// only what a stage must.
func RunChild() bool {
	role := os.Getenv(RoleEnv)
	if role == "" {
		return false
	}
	if dir := os.Getenv(ProfileEnv); dir != "" {
		stop := profile(dir, role+"-"+os.Getenv("INSTANCE_ID"))
		defer stop()
	}
	switch role {
	case "ingress":
		service.Main("ingress", service.ServeIngress)
	case "mapper":
		// The mapper loop as service.Mapper configures it, without the
		// materializer the service runs beside it (not under test); the harness
		// seeds the cache itself.
		service.Main("mapper", func(ctx context.Context, d *service.Deps) error {
			cfg := service.MapperConfig(d)
			cfg.CacheReady = nil
			return mapper.Run(ctx, cfg)
		})
	case "emitter", "emitter-unpaced":
		// The emitter as service.Emitter configures it; unpaced, without the
		// pacer: its own cost into a Heap with no limits (the pacing stage
		// measures pacing).
		service.Main("emitter", func(ctx context.Context, d *service.Deps) error {
			cfg := service.EmitterConfig(d)
			if role == "emitter-unpaced" {
				cfg.Pacer = nil
			}
			return emitter.Run(ctx, cfg)
		})
	case "bare-http":
		// The ingress floor: net/http answering 200 after reading the body.
		ctx, stop := service.SignalContext()
		defer stop()
		ln, err := net.Listen("tcp", os.Getenv("INGRESS_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"accepted":1}` + "\n"))
		})}
		go func() { <-ctx.Done(); srv.Close() }()
		srv.Serve(ln)
	default:
		fmt.Fprintf(os.Stderr, "perf: unknown %s %q\n", RoleEnv, role)
		os.Exit(2)
	}
	return true
}
