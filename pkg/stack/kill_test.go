package stack_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack"
)

// TestMain lets the test binary run as the stack process for the kill test.
func TestMain(m *testing.M) {
	if os.Getenv("STACK_TEST_CHILD") == "1" {
		env, err := config.LoadEnv(os.LookupEnv)
		if err == nil {
			log, _ := service.NewLogger("warn")
			err = stack.Run(context.Background(), env, log, nil, nil)
		}
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startChild(t *testing.T, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "STACK_TEST_CHILD=1")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack at %s not ready: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStackSurvivesKill: payloads acknowledged with 2xx while Heap is down
// are delivered after the process is killed with SIGKILL and restarted on
// the same DATA_DIR.
func TestStackSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack as a child process twice")
	}
	prefix := kafkatest.Prefix(t)
	app := prefix + "app"
	sink := heaptest.NewServer(t)
	sink.Inject(heaptest.Fault{Status: 503, Times: 1 << 30})
	addr := freeAddr(t)
	env := []string{
		"INGRESS_ADDR=" + addr,
		"DATA_DIR=" + t.TempDir(),
		"REDIS_URL=" + redistest.URL(t),
		"HEAP_API_URL=" + sink.URL,
		"SOURCES_FILE=" + writeSources(t, app),
		"TOPIC_PARTITIONS=3",
		"INSTANCE_ID=" + prefix,
	}
	if kafkatest.Real() {
		env = append(env, "TOPIC_PREFIX="+prefix)
		kafkatest.TopicsFor(t, kafkatest.Brokers(t), prefix, 3)
	}
	url := "http://" + addr
	child := startChild(t, env)
	waitReady(t, url)
	postFixtures(t, url) // every POST answered 200
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if n := len(sink.Accepted()); n != 0 {
		t.Fatalf("Heap accepted %d events while failing", n)
	}

	sink.ClearFaults()
	startChild(t, env)
	waitReady(t, url)
	got := waitAccepted(t, sink.Sink, 5, 60*time.Second)
	// From the webhooks alone: Priya's bounce and four Mandrill events.
	want := []string{}
	for _, row := range expected(app) {
		if !strings.Contains(row, "October product update") || strings.Contains(row, "priya") {
			want = append(want, row)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("after kill and restart Heap has %d events, want %d:\n%v", len(got), len(want), got)
	}
}
