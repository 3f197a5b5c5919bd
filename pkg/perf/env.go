// Package perf is the performance harness behind `make bench`: it runs each
// stage of the pipeline, as the real services in their own processes, beside
// a floor measured in the same run on the same Kafka, Redis and machine, and
// reports throughput, latency and peak memory as ratios against those floors.
// It never asserts a timing: it reports, and says which targets were met.
package perf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/goccy/go-yaml"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport/child"
)

// Partitions of every topic the harness creates (the services' default).
const Partitions = 6

// Env is the shared backends of one run: Kafka, Redis, a scratch directory
// and the harness's own executable, re-run as each service.
type Env struct {
	Brokers   []string
	KafkaDesc string
	RedisURL  string
	RedisDesc string
	Dir       string
	Exe       string
	Redis     redis.UniversalClient
	Conn      *kafka.Conn // KAFKA_BROKERS' TLS and SASL settings, as the services read them
	Kafka     *kgo.Client
	Admin     *kadm.Client

	closers []func()
}

// Setup starts or connects the backends: KAFKA_BROKERS or an in-process
// kfake; REDIS_URL, else a redis-server started here, else miniredis.
func Setup(ctx context.Context) (*Env, error) {
	e := &Env{}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	e.Exe = exe
	if e.Dir, err = os.MkdirTemp("", "mh-perf-"); err != nil {
		return nil, err
	}
	if os.Getenv("PERF_KEEP") == "" {
		e.closers = append(e.closers, func() { os.RemoveAll(e.Dir) })
	} else {
		fmt.Fprintf(os.Stderr, "perf: PERF_KEEP: service logs and sources stay in %s\n", e.Dir)
	}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		e.Brokers = strings.Split(env, ",")
		e.KafkaDesc = "KAFKA_BROKERS=" + env
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("kfake: %w", err)
		}
		e.closers = append(e.closers, c.Close)
		e.Brokers = c.ListenAddrs()
		e.KafkaDesc = "in-process kfake (franz-go), 1 broker, in the harness process"
	}
	switch url := os.Getenv("REDIS_URL"); {
	case url != "":
		e.RedisURL, e.RedisDesc = url, "REDIS_URL="+url
	default:
		if bin, err := exec.LookPath("redis-server"); err == nil {
			url, stop, err := startRedis(ctx, bin, e.Dir)
			if err != nil {
				return nil, err
			}
			e.closers = append(e.closers, stop)
			e.RedisURL, e.RedisDesc = url, "redis-server started by the harness ("+bin+")"
		} else {
			m, err := miniredis.Run()
			if err != nil {
				return nil, err
			}
			e.closers = append(e.closers, m.Close)
			e.RedisURL, e.RedisDesc = "redis://"+m.Addr(), "embedded miniredis (no redis-server on PATH): Redis figures are not representative"
		}
	}
	// The services' own settings (KAFKA_TLS_*, KAFKA_SASL_*, REDIS_TLS_*,
	// REDIS_SENTINEL_*, REDIS_CLUSTER_ADDRS): the children inherit them.
	senv, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if e.Redis, err = redisconn.Open(e.RedisURL, senv.Redis); err != nil {
		return nil, err
	}
	if e.Conn, err = kafka.NewConn(e.Brokers, senv.Kafka, "perf", zap.NewNop()); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { e.Redis.Close() })
	if err := e.Redis.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if e.Kafka, err = kgo.NewClient(append(e.Conn.Opts("perf"), kgo.ProducerLinger(5*time.Millisecond))...); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.Kafka.Close)
	e.Admin = kadm.NewClient(e.Kafka)
	if err := e.Kafka.Ping(ctx); err != nil {
		return nil, fmt.Errorf("kafka %v: %w", e.Brokers, err)
	}
	ok = true
	return e, nil
}

// Close stops what Setup started, last first.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func startRedis(ctx context.Context, bin, dir string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	url := fmt.Sprintf("redis://127.0.0.1:%d", port)
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(ctx).Err() == nil {
			return url, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("redis-server did not answer within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Topics creates the pipeline's topics under a fresh prefix.
func (e *Env) Topics(ctx context.Context, prefix string) (kafka.Topics, error) {
	t := kafka.NewTopics(prefix)
	return t, t.Ensure(ctx, e.Kafka, Partitions, -1)
}

// WriteSources writes a SOURCES_FILE and returns its path.
func (e *Env) WriteSources(name string, srcs []source.Source) (string, error) {
	data, err := yaml.Marshal(map[string]any{"sources": srcs})
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.Dir, name+"-sources.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	if _, err := source.Load(path); err != nil {
		return "", fmt.Errorf("perf sources: %w", err)
	}
	return path, nil
}

// Child is a service running in its own process, so its memory is its own.
type Child struct {
	*child.Proc
	log *os.File
}

// Start runs the harness executable as role with the service environment vars.
func (e *Env) Start(role, name string, vars map[string]string) (*Child, error) {
	return e.StartExe(e.Exe, name, map[string]string{RoleEnv: role}, vars)
}

// StartExe runs exe as a service process of the run: the harness's own
// environment (how the backends are reached: KAFKA_TLS_*, KAFKA_SASL_*,
// REDIS_*), then the run's brokers, Redis, instance and defaults, then each
// of vars in order, the last word winning. Its output goes to a log named
// for it in the run's directory.
func (e *Env) StartExe(exe, name string, vars ...map[string]string) (*Child, error) {
	logf, err := os.Create(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	env := []string{
		"KAFKA_BROKERS=" + strings.Join(e.Brokers, ","),
		"REDIS_URL=" + e.RedisURL,
		"ADMIN_ADDR=127.0.0.1:0",
		"INSTANCE_ID=" + name,
		"LOG_LEVEL=warn",
		fmt.Sprintf("TOPIC_PARTITIONS=%d", Partitions),
	}
	for _, vs := range vars {
		for k, v := range vs {
			env = append(env, k+"="+v)
		}
	}
	p, err := child.Start(name, logf, env, exe)
	if err != nil {
		logf.Close()
		return nil, err
	}
	return &Child{Proc: p, log: logf}, nil
}

// Stop asks the child to shut down (SIGTERM, then SIGKILL after 20 s) and
// returns its peak resident set size in bytes: VmHWM from /proc, read before
// it stops. Not rusage's Maxrss: the child is forked from the harness, and
// Linux carries the harness's own high-water mark (kfake holding the whole
// backlog) across the exec into the child's Maxrss.
func (c *Child) Stop() (int64, error) { return c.StopWithin(20 * time.Second) }

// StopWithin is Stop with grace before the SIGKILL.
func (c *Child) StopWithin(grace time.Duration) (int64, error) {
	defer c.log.Close()
	hwm, hwmErr := vmHWM(c.Pid())
	c.Proc.Stop(grace)
	return hwm, hwmErr
}

func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS needs Linux's /proc: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// WaitHTTP waits until url answers at all (any status).
func WaitHTTP(ctx context.Context, url string, c *Child) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Head(url); err == nil {
			resp.Body.Close()
			return nil
		}
		if err := c.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s did not answer within 60s", c.Name, url)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
