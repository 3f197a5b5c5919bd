package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack/stacktest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

const secret = "e2e-secret-0123456789"

// writeSources writes a SOURCES_FILE whose Mandrill settings match the
// fixture's signature, so the fixture batch is posted exactly as recorded.
func writeSources(t *testing.T, app string) string {
	t.Helper()
	sig := fixtures.Mandrill()
	path := filepath.Join(t.TempDir(), "sources.yaml")
	doc := fmt.Sprintf(`sources:
  - id: acme
    heap_app_id: %s
    webhook_secret: %s
    mandrill_webhook_url: %s
    mandrill_webhook_key: %s
`, app, secret, sig.RegisteredURL, sig.WebhookKey)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func post(t *testing.T, url string, body []byte, hdr map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d", req.URL.Path, resp.StatusCode)
	}
}

// postFixtures posts every audience webhook (the campaign webhook first) and
// the Mandrill batch with its recorded signature.
func postFixtures(t *testing.T, ingressURL string) {
	t.Helper()
	listURL := ingressURL + "/webhooks/mailchimp/acme/" + secret
	post(t, listURL, fixtures.ListWebhooks()["campaign"], nil)
	for _, n := range fixtures.ListWebhookNames() {
		if n != "campaign" {
			post(t, listURL, fixtures.ListWebhooks()[n], nil)
		}
	}
	post(t, ingressURL+"/webhooks/mandrill/acme", fixtures.Read("mandrill/webhook.form"),
		map[string]string{mailchimp.MandrillSignatureHdr: fixtures.Mandrill().XMandrillSignature})
}

// publishActivity stands in for the Reports API poller: it publishes the
// fixture email-activity members to mailchimp.raw as the poller will.
func publishActivity(t *testing.T, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, m := range fixtures.ActivityMembers() {
		r := &kgo.Record{Topic: topic, Key: []byte("acme/c:b3f0a9c1d2"), Value: m, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte("acme")},
			{Key: kafka.HeaderKind, Value: []byte(mailchimp.KindEmailActivity)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		}}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// summary is what a test compares of an event Heap kept.
func summary(a heaptest.Accepted) string {
	p := a.Properties
	s := fmt.Sprintf("%s | %s | %s | %v | %v | %v | %v | %v | %v", a.AppID, a.Event.Event, a.Identity,
		p["Campaign ID"], p["Campaign Title"], p["List ID"], p["IP"], p["URL"], p["Bounce Type"])
	if a.Event.Event != "Bounce Email" || !strings.Contains(a.Identity, "priya") {
		// Priya's bounce is reported twice; whichever came first carries the time.
		s += " | " + a.Timestamp + " | " + fmt.Sprint(p["Time"])
	}
	return s
}

func waitAccepted(t *testing.T, sink *heaptest.Sink, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(sink.Accepted()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("Heap has %d events, want %d", len(sink.Accepted()), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything more would show now
	var out []string
	for _, a := range sink.Accepted() {
		out = append(out, summary(a))
	}
	sort.Strings(out)
	return out
}

// expected lists exactly what Heap must keep from the fixtures (see
// fixtures/README.md): default settings, join key identity, lowercase.
func expected(app string) []string {
	const oct = "b3f0a9c1d2 | October product update | 7c1e5d2a90"
	rows := []string{
		app + " | Bounce Email | priya.raman@example.com | " + oct + " | <nil> | <nil> | hard",
		app + " | Bounce Email | full.box@example.com | " + oct + " | <nil> | <nil> | soft | 2026-10-02T14:21:30.000Z | 2026-10-02T14:21:30.000Z",
		app + " | Open Email | jordan.lee@example.com | " + oct + " | 192.0.2.44 | <nil> | <nil> | 2026-10-02T15:02:11.000Z | 2026-10-02T15:02:11.000Z",
		app + " | Open Email | jordan.lee@example.com | " + oct + " | 192.0.2.45 | <nil> | <nil> | 2026-10-02T19:45:00.000Z | 2026-10-02T19:45:00.000Z",
		app + " | Click Email Link | jordan.lee@example.com | " + oct + " | 192.0.2.44 | https://shop.example/october?utm_source=mailchimp&utm_campaign=oct | <nil> | 2026-10-02T15:02:40.000Z | 2026-10-02T15:02:40.000Z",
		app + " | Open Email | mei.chen@example.com | " + oct + " | 203.0.113.9 | <nil> | <nil> | 2026-10-02T16:10:05.000Z | 2026-10-02T16:10:05.000Z",
		app + " | Open Email | jordan.lee@example.com | shipping | Your order #88213 has shipped | <nil> | 192.0.2.44 | <nil> | <nil> | 2025-10-02T14:05:12.000Z | 2025-10-02T14:05:12.000Z",
		app + " | Click Email Link | jordan.lee@example.com | shipping | Your order #88213 has shipped | <nil> | 192.0.2.44 | https://shop.example/track/88213 | <nil> | 2025-10-02T14:05:40.000Z | 2025-10-02T14:05:40.000Z",
		app + " | Bounce Email | nobody@invalid.example | auth | Reset your password | <nil> | <nil> | <nil> | hard | 2025-10-02T14:08:20.000Z | 2025-10-02T14:08:20.000Z",
		app + " | Bounce Email | full.box@example.com | digest | Weekly digest | <nil> | <nil> | <nil> | soft | 2025-10-02T14:10:00.000Z | 2025-10-02T14:10:00.000Z",
	}
	sort.Strings(rows)
	return rows
}

// TestStackEndToEnd posts the fixtures to a running stack (real Redis,
// in-process Kafka or KAFKA_BROKERS) and checks exactly what Heap keeps.
func TestStackEndToEnd(t *testing.T) {
	testsupport.Integration(t, "runs the whole stack")
	prefix := kafkatest.Prefix(t)
	app := prefix + "app"
	env := stacktest.Env(t, prefix)
	env.SourcesFile = writeSources(t, app)
	info := stacktest.Start(t, env)
	postFixtures(t, info.IngressURL)
	publishActivity(t, info.Brokers, kafka.NewTopics(env.TopicPrefix).Raw)

	got := waitAccepted(t, info.Sink, 10, 60*time.Second)
	if diff := cmp.Diff(expected(app), got); diff != "" {
		t.Fatalf("Heap received (-want +got):\n%s", diff)
	}
	// Priya's bounce came twice (webhook and activity) under one key: the
	// ledger or Heap's idempotency key kept one (the list above).
	if st := info.Sink.Stats(); st.Rejected != 0 || st.Throttled != 0 {
		t.Errorf("stats %+v", st)
	}

	// Webhook retries of the same payloads change nothing in Heap.
	postFixtures(t, info.IngressURL)
	if got := waitAccepted(t, info.Sink, 10, 30*time.Second); len(got) != 10 {
		t.Fatalf("Heap has %d events after a retry, want 10", len(got))
	}
}

// TestStackDemo is `make run`: no SOURCES_FILE, DEMO=1, events reach the sink.
func TestStackDemo(t *testing.T) {
	testsupport.Integration(t, "runs the whole stack")
	env := stacktest.Env(t, kafkatest.Prefix(t))
	// The demo's app id is fixed: a Redis of its own keeps another run's
	// delivery ledger from saying its events were already sent.
	env.RedisURL = redistest.NewServer(t).URL
	env.Demo = true
	info := stacktest.Start(t, env)
	src := info.Sources.All()[0]
	if src.ID != "demo" || !src.Wants(source.EventSent) {
		t.Fatalf("demo source %+v", src.ID)
	}
	// Webhooks: 1 list bounce + 4 Mandrill + Sent Email; polled from the
	// Mailchimp stand-in: the fixture campaign's 6 activity events, Priya's
	// bounce among them (one id with the list bounce).
	got := waitAccepted(t, info.Sink, 11, 60*time.Second)
	if len(got) != 11 {
		t.Fatalf("demo delivered %d events: %v", len(got), got)
	}
	// Exactly the fixtures' expected events, campaign titles included, plus Sent Email.
	var rest []string
	for _, g := range got {
		if !strings.Contains(g, "| Sent Email |") {
			rest = append(rest, g)
		}
	}
	if diff := cmp.Diff(expected("demo-app"), rest); diff != "" {
		t.Fatalf("demo delivered (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(env.DataDir, "demo-sources.yaml")); err != nil {
		t.Fatal(err)
	}
}
