package ingress_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/ingress"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/readiness"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestOversizedEventCostsOnlyItself: one event over the record limit in a
// batch of 1000 is dead-lettered with its reason; the other 999 are
// accepted and the batch answered 200 (it used to answer 503 for ever).
func TestOversizedEventCostsOnlyItself(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), 10*time.Second)
	// 999 ordinary events and one with a 1 MB URL, as a hostile or broken
	// sender could post.
	form := mandrillBatch(999)
	huge := fmt.Sprintf(`{"event":"click","ts":1759413912,"_id":"big","url":"https://x.example/%s","msg":{"_id":"big","email":"x@example.com"}}`,
		strings.Repeat("a", 1<<20))
	form.Set("mandrill_events", "["+huge+","+strings.TrimPrefix(form.Get("mandrill_events"), "["))
	body, hdr := signed(t, fixtures.Mandrill().WebhookKey, form)
	if resp := e.do(t, http.MethodPost, "/webhooks/mandrill/acme", body, hdr); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := e.published(t); n != 999 {
		t.Fatalf("%d events in mailchimp.raw, want 999", n)
	}
	dl := kafkatest.Consume(t, e.brokers, e.dlq, 1, 10*time.Second)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	reason := kafka.Header(dl[0], kafka.HeaderReason)
	if !strings.HasPrefix(reason, "oversized: event of ") || strings.Contains(reason, "example.com") {
		t.Fatalf("reason %q", reason)
	}
	if kafka.Header(dl[0], kafka.HeaderSource) != "acme" || len(dl[0].Value) != 64<<10 {
		t.Fatalf("dead letter: source %q, %d bytes", kafka.Header(dl[0], kafka.HeaderSource), len(dl[0].Value))
	}
}

// TestBodyBudget: bodies in flight beyond the budget wait, then are
// answered 503 (the sender retries); a declared Content-Length never
// reserves memory, and one over the route's limit is refused unread.
func TestBodyBudget(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 1)
	cl, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := ingress.NewHandler(ingress.Config{Sources: sources(t), Topic: topics.Raw, DLQTopic: topics.RawDLQ,
		Log: zap.NewNop(), MaxInflightBytes: 256 << 10}, kafka.Producer{Client: cl})
	srv := &http.Server{Handler: h, ReadTimeout: 30 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // waits out the connections answered early
	}()
	base := "http://" + ln.Addr().String()

	// Four slow senders, each having sent 100 KB of a declared 8 MB body.
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /webhooks/mandrill/acme HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Mandrill-Signature: x\r\nContent-Length: %d\r\n\r\n", ingress.MaxMandrillBody)
		c.Write(bytes.Repeat([]byte("a"), 100<<10))
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	body := fixtures.Read("mandrill/webhook.form")
	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/mandrill/acme", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Mandrill-Signature", fixtures.Mandrill().XMandrillSignature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("with the budget held by slow senders: %d, want 503", code)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for post() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the budget was not returned when the slow senders left")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Over the limit by declaration: refused before a byte is read.
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/mandrill/acme", strings.NewReader("x"))
	req.ContentLength = ingress.MaxMandrillBody + 1
	req.Header.Set("X-Mandrill-Signature", "x")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("declared over the limit: %d", resp.StatusCode)
		}
	}
}

func TestRequestIDValidated(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), 10*time.Second)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"req-123_abc.1:2", true},
		{"has space", false},
		{"line\nbreak", false},
		{strings.Repeat("a", 65), false},
		{"<script>", false},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/webhooks/mailchimp/acme/"+secret, strings.NewReader(string(fixtures.Read("list-webhooks/subscribe.form"))))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header["X-Request-Id"] = []string{tc.sent}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // the client refuses some values itself
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); (got == tc.sent) != tc.kept {
			t.Errorf("X-Request-Id %q answered as %q", tc.sent, got)
		}
	}
}

func TestPublicReadyzSaysOnlyWhether(t *testing.T) {
	h := ingress.NewHandler(ingress.Config{Sources: sources(t), Log: zap.NewNop(),
		Ready: []readiness.Check{{Name: "kafka", Fn: func(context.Context) error { return fmt.Errorf("kafka: not authorized for Read on group secret-group") }}}},
		nil)
	req, _ := http.NewRequest(http.MethodGet, "/readyz", nil)
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.code != http.StatusServiceUnavailable || strings.Contains(rec.body.String(), "secret-group") {
		t.Fatalf("public /readyz %d %s", rec.code, rec.body.String())
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
