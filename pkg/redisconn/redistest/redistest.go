// Package redistest gives tests a Redis: the deployment the environment
// names (REDIS_URL, or a Cluster by REDIS_CLUSTER_ADDRS, or Sentinel by
// REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER, with the REDIS_TLS_*
// files: CI starts each and fails if it cannot), else a redis-server started
// for the test when one is installed, else an embedded miniredis, which it
// says so in the test output.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
)

var noteOnce sync.Once

// Options are the cluster, sentinel and TLS settings of the environment,
// read as the services read them.
func Options(t testing.TB) redisconn.Options {
	t.Helper()
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return env.Redis
}

// Mode names the deployment tests run on: server, cluster or sentinel.
func Mode(t testing.TB) string { return Options(t).Mode() }

// URL returns a redis:// URL for t; on a Cluster or Sentinel it is
// REDIS_URL as set (possibly empty: the addresses come from Options).
func URL(t testing.TB) string {
	t.Helper()
	if o := Options(t); o.Mode() != "server" {
		url := os.Getenv("REDIS_URL")
		ping(t, url)
		return url
	}
	if url := os.Getenv("REDIS_URL"); url != "" {
		ping(t, url)
		return url
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return startServer(t, bin)
	}
	if os.Getenv("CI") != "" {
		t.Fatal("redistest: CI must provide REDIS_URL or redis-server; it never falls back to miniredis")
	}
	noteOnce.Do(func() {
		fmt.Fprintln(os.Stderr, "redistest: no REDIS_URL and no redis-server on PATH: using embedded miniredis")
	})
	m := miniredis.RunT(t)
	return "redis://" + m.Addr()
}

// Client returns a client for URL(t) and Options(t), closed when t ends.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	return clientFor(t, URL(t), Options(t))
}

// PrivateClient returns a client of a Redis of t's own (NewServer), for tests
// whose keys are not scoped by a unique prefix.
func PrivateClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	return clientFor(t, NewServer(t).URL, redisconn.Options{})
}

func clientFor(t testing.TB, url string, o redisconn.Options) redis.UniversalClient {
	t.Helper()
	c, err := redisconn.Open(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping checks the environment's Redis answers a real round trip.
func ping(t testing.TB, url string) {
	t.Helper()
	o := Options(t)
	c, err := redisconn.Open(url, o)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := redisconn.Ping(ctx, c); err != nil {
		t.Fatalf("redistest: the %s Redis of the environment does not answer: %v", o.Mode(), err)
	}
}

// Server is a Redis a test owns and can restart: a redis-server process when
// one is installed (always in CI), else miniredis.
type Server struct {
	URL     string
	restart func(t testing.TB, downtime time.Duration)
}

// Restart stops the server, leaves it down for downtime, and starts it again
// on the same port. Data is kept only by miniredis; a restarted redis-server
// comes back empty, as a cache may.
func (s *Server) Restart(t testing.TB, downtime time.Duration) { s.restart(t, downtime) }

// NewServer starts a Redis for t alone, ignoring REDIS_URL.
func NewServer(t testing.TB) *Server {
	t.Helper()
	if bin, err := exec.LookPath("redis-server"); err == nil {
		var cmd *exec.Cmd
		port, dir := freePort(t), t.TempDir()
		start := func(t testing.TB) {
			cmd = launch(t, bin, port, dir)
		}
		start(t)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return &Server{URL: fmt.Sprintf("redis://127.0.0.1:%d", port), restart: func(t testing.TB, downtime time.Duration) {
			cmd.Process.Kill()
			cmd.Wait()
			time.Sleep(downtime)
			start(t)
		}}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("redistest: CI needs redis-server on PATH")
	}
	m := miniredis.RunT(t)
	return &Server{URL: "redis://" + m.Addr(), restart: func(t testing.TB, downtime time.Duration) {
		m.Close()
		time.Sleep(downtime)
		if err := m.Restart(); err != nil {
			t.Fatalf("redistest: restart miniredis: %v", err)
		}
	}}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServer(t testing.TB, bin string) string {
	t.Helper()
	port := freePort(t)
	cmd := launch(t, bin, port, t.TempDir())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return fmt.Sprintf("redis://127.0.0.1:%d", port)
}

// launch starts redis-server on port and waits until it answers.
func launch(t testing.TB, bin string, port int, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d", port)
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server on port %d did not answer: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
