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
	*perf.Child
	Addr string // host:port of INGRESS_ADDR
}

// StartIngress runs bin with env's brokers and Redis, the sources file and
// topic prefix, and waits until /readyz answers 200.
func StartIngress(ctx context.Context, env *perf.Env, bin, name, sources, prefix string) (*Ingress, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := env.StartExe(bin, name, map[string]string{
		"SOURCES_FILE":        sources,
		"INGRESS_ADDR":        addr,
		"KAFKA_CREATE_TOPICS": "true",
		"TOPIC_PREFIX":        prefix,
		// LOG_LEVEL stays warn: info logs every request, and the log would
		// measure the disk.
	})
	if err != nil {
		return nil, err
	}
	in := &Ingress{Child: c, Addr: addr}
	if err := in.waitReady(ctx); err != nil {
		in.Stop()
		return nil, err
	}
	return in, nil
}

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
			return fmt.Errorf("%s: /readyz not 200 within 60s: %s", in.Name, strings.TrimSpace(in.Tail()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop asks the process to shut down: SIGTERM, then SIGKILL after 5 s (the
// figures are taken by then; its drain is not under test).
func (in *Ingress) Stop() { in.StopWithin(5 * time.Second) }

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
