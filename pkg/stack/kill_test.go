package stack_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestMain lets the test binary run as the stack process for the kill test.
func TestMain(m *testing.M) {
	testsupport.RunRole(map[string]func() int{"stack": runStack})
	goleak.VerifyTestMain(m)
}

// runStack is the stack process: it runs until killed, and any return is
// a failure.
func runStack() int {
	env, err := config.LoadEnv(os.LookupEnv)
	if err == nil {
		log, _ := service.NewLogger("warn")
		err = stack.Run(context.Background(), env, log, nil, nil)
	}
	fmt.Fprintln(os.Stderr, "child:", err)
	return 1
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

func waitReady(t *testing.T, url string) {
	t.Helper()
	testsupport.WaitForEvery(t, "the stack at "+url+" ready", 60*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestStackSurvivesKill: payloads acknowledged with 2xx while Heap is down
// are delivered after the process is killed with SIGKILL and restarted on
// the same DATA_DIR.
func TestStackSurvivesKill(t *testing.T) {
	testsupport.Integration(t, "starts the stack as a child process twice")
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
	first := testsupport.StartRole(t, "stack", env)
	waitReady(t, url)
	postFixtures(t, url) // every POST answered 200
	first.Kill()
	<-first.Done()
	if n := len(sink.Accepted()); n != 0 {
		t.Fatalf("Heap accepted %d events while failing", n)
	}

	sink.ClearFaults()
	testsupport.StartRole(t, "stack", env)
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
