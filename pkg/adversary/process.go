package adversary

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

	"github.com/mailchimp-heap/mailchimp-heap/pkg/perf"
)

// IngressPackage is the service under attack, built as it is deployed.
const IngressPackage = "github.com/mailchimp-heap/mailchimp-heap/services/ingress"

// Build compiles IngressPackage into dir (from within the Go workspace) and
// returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "ingress")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, IngressPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (run from the repository, or pass -ingress): %w\n%s", IngressPackage, err, out)
	}
	return bin, nil
}

// Ingress is one ingress process: the real binary, on the run's Kafka and
// Redis, listening on loopback. Each attack gets a fresh one, so its peak
// RSS is the attack's and an attack that kills it spoils no other.
type Ingress struct {
	Name string
	Addr string // host:port of INGRESS_ADDR
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// StartIngress runs bin with env's brokers and Redis, the sources file and
// topic prefix, and waits until /readyz answers 200.
func StartIngress(ctx context.Context, env *perf.Env, bin, name, sources, prefix string) (*Ingress, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(env.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin)
	// The harness's environment first (KAFKA_TLS_*, KAFKA_SASL_*, REDIS_*:
	// how the backends are reached), then the run's own settings, which win.
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(env.Brokers, ","),
		"REDIS_URL="+env.RedisURL,
		"SOURCES_FILE="+sources,
		"INGRESS_ADDR="+addr,
		"ADMIN_ADDR=127.0.0.1:0",
		"KAFKA_CREATE_TOPICS=true",
		fmt.Sprintf("TOPIC_PARTITIONS=%d", perf.Partitions),
		"TOPIC_PREFIX="+prefix,
		"INSTANCE_ID="+name,
		"LOG_LEVEL=warn", // info logs every request: the log would measure the disk
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	in := &Ingress{Name: name, Addr: addr, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { in.err = cmd.Wait(); close(in.done) }()
	if err := in.waitReady(ctx); err != nil {
		in.Stop()
		return nil, err
	}
	return in, nil
}

// Pid is the process id.
func (in *Ingress) Pid() int { return in.cmd.Process.Pid }

// URL is the base URL of the webhook API.
func (in *Ingress) URL() string { return "http://" + in.Addr }

func (in *Ingress) waitReady(ctx context.Context) error {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := cl.Get(in.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := in.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /readyz not 200 within 60s: %s", in.Name, in.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exited reports an exit, with the tail of the process's log.
func (in *Ingress) Exited() error {
	select {
	case <-in.done:
		return fmt.Errorf("%s exited: %v: %s", in.Name, in.err, in.tail())
	default:
		return nil
	}
}

func (in *Ingress) tail() string {
	b, _ := os.ReadFile(in.log.Name())
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// Kill ends the process at once (it is taking the machine's memory).
func (in *Ingress) Kill() { in.cmd.Process.Kill() }

// Stop asks the process to shut down: SIGTERM, then SIGKILL after 5 s (the
// figures are taken by then; its drain is not under test).
func (in *Ingress) Stop() {
	defer in.log.Close()
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(5 * time.Second):
		in.cmd.Process.Kill()
		<-in.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("loopback listener without a TCP address")
	}
	return addr.Port, nil
}
