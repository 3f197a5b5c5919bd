package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/ingress"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/readiness"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

const secret = "s3cret-s3cret-s3cret"

type env struct {
	srv     *httptest.Server
	topic   string
	dlq     string
	brokers []string
	logs    *observer.ObservedLogs
}

func sources(t *testing.T) *source.Sources {
	t.Helper()
	sig := fixtures.Mandrill()
	ss, err := source.New(
		source.Source{ID: "acme", HeapAppID: "app1", WebhookSecret: secret,
			MandrillWebhookURL: sig.RegisteredURL, MandrillWebhookKey: sig.WebhookKey},
		source.Source{ID: "nomandrill", HeapAppID: "app2"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func newEnv(t *testing.T, brokers []string, produceTimeout time.Duration) *env {
	t.Helper()
	topics := kafkatest.Topics(t, brokers, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	core, logs := observer.New(zap.DebugLevel)
	h := ingress.NewHandler(ingress.Config{
		Sources:        sources(t),
		Topic:          topics.Raw,
		DLQTopic:       topics.RawDLQ,
		ProduceTimeout: produceTimeout,
		Log:            zap.New(core),
		// What service.Deps.Ready checks: Preflight's Metadata request
		// (no topics needed here).
		Ready: []readiness.Check{{Name: "kafka", Fn: func(ctx context.Context) error {
			_, err := kafka.Preflight(ctx, cl, nil)
			return err
		}}},
	}, kafka.Producer{Client: cl})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{srv: srv, topic: topics.Raw, dlq: topics.RawDLQ, brokers: brokers, logs: logs}
}

// published counts the records in the topic.
func (e *env) published(t *testing.T) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), e.topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func (e *env) do(t *testing.T, method, path string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func signed(t *testing.T, key string, form url.Values) ([]byte, map[string]string) {
	t.Helper()
	sig := mailchimp.MandrillSignature(fixtures.Mandrill().RegisteredURL, key, form)
	return []byte(form.Encode()), map[string]string{mailchimp.MandrillSignatureHdr: sig}
}

func mandrillBatch(n int) url.Values {
	var evs []string
	for i := range n {
		evs = append(evs, fmt.Sprintf(`{"event":"open","ts":1759413912,"_id":"m%d","msg":{"_id":"m%d","email":"x@example.com"}}`, i, i))
	}
	return url.Values{"mandrill_events": {"[" + strings.Join(evs, ",") + "]"}}
}

func TestIngress(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), 10*time.Second)
	sig := fixtures.Mandrill()
	mandrillBody := fixtures.Read("mandrill/webhook.form")
	key := fixtures.Mandrill().WebhookKey
	notJSON, notJSONHdr := signed(t, key, url.Values{"mandrill_events": {"not json"}})
	tooMany, tooManyHdr := signed(t, key, mandrillBatch(1001))
	atLimit, atLimitHdr := signed(t, key, mandrillBatch(1000))
	twoFields, twoFieldsHdr := signed(t, key, url.Values{"mandrill_events": {"[]", "[]"}})
	withExtra, withExtraHdr := signed(t, key, url.Values{"mandrill_events": mustForm(mandrillBody)["mandrill_events"], "extra": {"1"}})
	escapedName := []byte(strings.Replace(string(mandrillBody), "mandrill_events=", "mandrill%5Fevents=", 1))
	badEscape := []byte("mandrill_events=%5B%zz%5D")
	badEscapeHdr := map[string]string{mailchimp.MandrillSignatureHdr: mailchimp.MandrillSignature(sig.RegisteredURL, key, url.Values{"mandrill_events": {"[%zz]"}})}
	notJSONBadSig := map[string]string{mailchimp.MandrillSignatureHdr: sig.XMandrillSignature}
	listPath := "/webhooks/mailchimp/acme/" + secret

	type tc struct {
		name      string
		method    string
		path      string
		body      []byte
		hdr       map[string]string
		status    int
		published int64
	}
	cases := []tc{
		{"audience GET validation", "GET", listPath, nil, nil, 200, 0},
		{"audience HEAD", "HEAD", listPath, nil, nil, 200, 0},
		{"audience GET wrong secret: as unknown", "GET", "/webhooks/mailchimp/acme/wrong-secret-wrong", nil, nil, 404, 0},
		{"audience POST unknown source", "POST", "/webhooks/mailchimp/nobody/" + secret, fixtures.Read("list-webhooks/subscribe.form"), nil, 404, 0},
		{"audience POST source without secret", "POST", "/webhooks/mailchimp/nomandrill/x", fixtures.Read("list-webhooks/subscribe.form"), nil, 404, 0},
		{"audience POST wrong secret: as unknown", "POST", "/webhooks/mailchimp/acme/" + secret + "x", fixtures.Read("list-webhooks/subscribe.form"), nil, 404, 0},
		{"audience POST malformed", "POST", listPath, []byte("type=&fired_at=x"), nil, 400, 0},
		{"audience POST bad encoding", "POST", listPath, []byte("type=subscribe&%zz"), nil, 400, 0},
		{"audience POST unknown type", "POST", listPath, []byte("type=party&fired_at=2026-10-01+08%3A00%3A12"), nil, 400, 0},
		{"audience POST too large", "POST", listPath, bytes.Repeat([]byte("a"), ingress.MaxListBody+1), nil, 413, 0},
		{"mandrill HEAD", "HEAD", "/webhooks/mandrill/acme", nil, nil, 200, 0},
		{"mandrill HEAD unknown: as any", "HEAD", "/webhooks/mandrill/nobody", nil, nil, 200, 0},
		{"mandrill HEAD not configured: as any", "HEAD", "/webhooks/mandrill/nomandrill", nil, nil, 200, 0},
		{"mandrill validation POST", "POST", "/webhooks/mandrill/acme", []byte(sig.ValidationPost.Body),
			map[string]string{mailchimp.MandrillSignatureHdr: sig.ValidationPost.XMandrillSignature}, 200, 0},
		{"mandrill batch", "POST", "/webhooks/mandrill/acme", mandrillBody,
			map[string]string{mailchimp.MandrillSignatureHdr: sig.XMandrillSignature}, 200, 9},
		{"mandrill without signature", "POST", "/webhooks/mandrill/acme", mandrillBody, nil, 401, 0},
		{"mandrill bad signature", "POST", "/webhooks/mandrill/acme", mandrillBody,
			map[string]string{mailchimp.MandrillSignatureHdr: sig.ValidationPost.XMandrillSignature}, 403, 0},
		{"mandrill batch signed with the validation key", "POST", "/webhooks/mandrill/acme", mandrillBody,
			map[string]string{mailchimp.MandrillSignatureHdr: mailchimp.MandrillSignature(sig.RegisteredURL, mailchimp.MandrillValidationKey, mustForm(mandrillBody))}, 403, 0},
		{"mandrill unknown source: as a bad signature", "POST", "/webhooks/mandrill/nobody", mandrillBody,
			map[string]string{mailchimp.MandrillSignatureHdr: sig.XMandrillSignature}, 403, 0},
		{"mandrill not JSON", "POST", "/webhooks/mandrill/acme", notJSON, notJSONHdr, 400, 0},
		{"mandrill not JSON, bad signature", "POST", "/webhooks/mandrill/acme", notJSON, notJSONBadSig, 403, 0},
		{"mandrill two fields", "POST", "/webhooks/mandrill/acme", twoFields, twoFieldsHdr, 400, 0},
		{"mandrill two fields, bad signature", "POST", "/webhooks/mandrill/acme", twoFields, notJSONBadSig, 403, 0},
		{"mandrill batch beside another field", "POST", "/webhooks/mandrill/acme", withExtra, withExtraHdr, 200, 9},
		{"mandrill batch beside another field, unsigned", "POST", "/webhooks/mandrill/acme", withExtra, nil, 401, 0},
		{"mandrill batch, escaped field name", "POST", "/webhooks/mandrill/acme", escapedName,
			map[string]string{mailchimp.MandrillSignatureHdr: sig.XMandrillSignature}, 200, 9},
		{"mandrill bad escape", "POST", "/webhooks/mandrill/acme", badEscape, badEscapeHdr, 400, 0},
		{"mandrill bad escape, unsigned: refused unread", "POST", "/webhooks/mandrill/acme", badEscape, nil, 401, 0},
		{"mandrill empty body", "POST", "/webhooks/mandrill/acme", nil, notJSONBadSig, 403, 0},
		{"mandrill 1001 events", "POST", "/webhooks/mandrill/acme", tooMany, tooManyHdr, 413, 0},
		{"mandrill body too large", "POST", "/webhooks/mandrill/acme", bytes.Repeat([]byte("a"), ingress.MaxMandrillBody+1), nil, 413, 0},
		{"mandrill 1000 events", "POST", "/webhooks/mandrill/acme", atLimit, atLimitHdr, 200, 1000},
	}
	for _, name := range fixtures.ListWebhookNames() {
		cases = append(cases, tc{"audience " + name, "POST", listPath, fixtures.ListWebhooks()[name], nil, 200, 1})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.published(t)
			resp := e.do(t, c.method, c.path, c.body, c.hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if got := e.published(t) - before; got != c.published {
				t.Fatalf("published %d records, want %d", got, c.published)
			}
		})
	}
	t.Run("no email or secret in logs", func(t *testing.T) {
		for _, entry := range e.logs.All() {
			b, _ := json.Marshal(entry.ContextMap())
			line := entry.Message + string(b)
			if strings.Contains(line, "@") || strings.Contains(line, secret) || strings.Contains(line, key) {
				t.Fatalf("log leaks an address or secret: %s", line)
			}
		}
	})
}

func mustForm(body []byte) url.Values {
	f, err := url.ParseQuery(string(body))
	if err != nil {
		panic(err)
	}
	return f
}

// TestIngressPublishesByteForByte checks the records: one per unit, exactly
// the bytes received, with the contract's headers.
func TestIngressPublishesByteForByte(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), 10*time.Second)
	cleaned := fixtures.Read("list-webhooks/cleaned-hard.form")
	resp := e.do(t, "POST", "/webhooks/mailchimp/acme/"+secret, cleaned, map[string]string{"X-Request-Id": "req-1"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "req-1" {
		t.Fatalf("status %d request id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	body := fixtures.Read("mandrill/webhook.form")
	resp = e.do(t, "POST", "/webhooks/mandrill/acme", body, map[string]string{mailchimp.MandrillSignatureHdr: fixtures.Mandrill().XMandrillSignature})
	if resp.StatusCode != 200 {
		t.Fatalf("mandrill status %d", resp.StatusCode)
	}
	units, err := mailchimp.SplitMandrillBatch(mustForm(body).Get("mandrill_events"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{string(cleaned): mailchimp.KindListWebhook}
	for _, u := range units {
		want[string(u)] = mailchimp.KindMandrillEvent
	}
	recs := kafkatest.Consume(t, e.brokers, e.topic, 1+len(units), 20*time.Second)
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		kind, ok := want[string(r.Value)]
		if !ok {
			t.Fatalf("record value is not a received unit: %.80s", r.Value)
		}
		if got := kafka.Header(r, kafka.HeaderKind); got != kind {
			t.Errorf("kind %q, want %q", got, kind)
		}
		if got := kafka.Header(r, kafka.HeaderSource); got != "acme" {
			t.Errorf("source %q", got)
		}
		if _, err := time.Parse(time.RFC3339Nano, kafka.Header(r, kafka.HeaderReceivedAt)); err != nil {
			t.Errorf("received-at: %v", err)
		}
		if kafka.Header(r, kafka.HeaderRequestID) == "" {
			t.Error("no request id")
		}
		if !strings.HasPrefix(string(r.Key), "acme/") {
			t.Errorf("key %q", r.Key)
		}
		if kind == mailchimp.KindMandrillEvent {
			if want := "acme/" + messageKey(r.Value); string(r.Key) != want {
				t.Errorf("key %q, want %q", r.Key, want)
			}
		}
	}
}

// messageKey is a Mandrill event's key as the contract has it: "m:" and the
// message id (msg._id, else _id), "m:" alone when there is none.
func messageKey(event []byte) string {
	var ids struct {
		ID  string `json:"_id"`
		Msg struct {
			ID string `json:"_id"`
		} `json:"msg"`
	}
	if json.Unmarshal(event, &ids) != nil {
		return "m:"
	}
	return (mailchimp.MandrillEvent{ID: ids.ID, Msg: mailchimp.MandrillMsg{ID: ids.Msg.ID}}).PartitionKey()
}

// onlyReader hides a body's length: the request goes out chunked.
type onlyReader struct{ io.Reader }

// TestIngressConcurrentBatches: requests in flight at once (their buffers
// reused across requests) each publish exactly their own events.
func TestIngressConcurrentBatches(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), 20*time.Second)
	key := fixtures.Mandrill().WebhookKey
	const senders, each = 4, 6
	want := map[string]string{} // value -> key
	bodies := make([][][]byte, senders)
	hdrs := make([][]map[string]string, senders)
	for s := range senders {
		for r := range each {
			n := 1 + (s*each+r)*37%300
			var evs []string
			for i := range n {
				id := fmt.Sprintf("s%dr%di%d", s, r, i)
				ev := fmt.Sprintf(`{"event":"open","ts":1759413912,"_id":"e-%s","msg":{"_id":"m-%s","email":"x%s@example.com","subject":"caf\u00e9 & +1 %%"}}`, id, id, id)
				if i%7 == 3 {
					ev = fmt.Sprintf(`{"event":"open","ts":1759413912,"_id":"e-%s"}`, id)
				}
				evs = append(evs, ev)
				want[ev] = "acme/" + messageKey([]byte(ev))
			}
			body, hdr := signed(t, key, url.Values{"mandrill_events": {"[" + strings.Join(evs, ", ") + "]"}})
			bodies[s] = append(bodies[s], body)
			hdrs[s] = append(hdrs[s], hdr)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Go(func() {
			for r := range each {
				var body io.Reader = bytes.NewReader(bodies[s][r])
				if r%2 == 1 {
					body = onlyReader{body}
				}
				req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/mandrill/acme", body)
				for k, v := range hdrs[s][r] {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("sender %d request %d: status %d", s, r, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recs := kafkatest.Consume(t, e.brokers, e.topic, len(want), 30*time.Second)
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		k, ok := want[string(r.Value)]
		switch {
		case !ok:
			t.Fatalf("record value is not a sent event: %q", r.Value)
		case seen[string(r.Value)]:
			t.Fatalf("event published twice: %s", r.Value)
		case string(r.Key) != k:
			t.Fatalf("key %q, want %q", r.Key, k)
		}
		seen[string(r.Value)] = true
	}
}

// TestIngressKafkaUnavailable: never 2xx for a payload that is not in Kafka.
func TestIngressKafkaUnavailable(t *testing.T) {
	testsupport.Integration(t, "waits out produce timeouts against an unreachable broker")
	c := kafkatest.NewCluster(t)
	e := newEnv(t, c.ListenAddrs(), 2*time.Second)
	if resp := e.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("readyz %d before the outage", resp.StatusCode)
	}
	c.Close()
	resp := e.do(t, "POST", "/webhooks/mailchimp/acme/"+secret, fixtures.Read("list-webhooks/cleaned-hard.form"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d during the outage, want 503", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz %d: the process itself is healthy", resp.StatusCode)
	}
}
