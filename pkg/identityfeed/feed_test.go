package identityfeed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// Bearer tokens of the test sources.
const (
	tokAcme  = "acme-token-0123456789"
	tokFwd   = "fwd-token-0123456789"
	tokIdent = "ident-token-0123456789"
)

func testSources(t testing.TB) *source.Sources {
	t.Helper()
	ss, err := source.New(
		source.Source{ID: "acme", HeapAppID: "app1", EmailProperty: "email", IdentityToken: tokAcme},
		source.Source{ID: "fwd", HeapAppID: "app2", EmailProperty: "email", IdentityToken: tokFwd, ForwardIdentities: true},
		source.Source{ID: "ident", HeapAppID: "app3", IdentityToken: tokIdent, ForwardIdentities: true}, // joins on identity
		source.Source{ID: "nofeed", HeapAppID: "app4", EmailProperty: "email"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

type env struct {
	srv     *httptest.Server
	heap    *heaptest.Server
	topic   string
	brokers []string
	logs    *observer.ObservedLogs
}

// failingPublisher stands for Kafka refusing or timing out.
type failingPublisher struct{ calls atomic.Int64 }

func (p *failingPublisher) Publish(context.Context, ...*kgo.Record) error {
	p.calls.Add(1)
	return errors.New("kafka: NOT_ENOUGH_REPLICAS")
}

// newEnv serves the feed over kfake (or KAFKA_BROKERS) and a Heap stand-in;
// pub replaces the Kafka publisher when not nil.
func newEnv(t *testing.T, brokers []string, pub kafka.Publisher, heapOpts ...heaptest.Option) *env {
	t.Helper()
	topics := kafkatest.Topics(t, brokers, 3)
	if pub == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		pub = kafka.Producer{Client: cl}
	}
	hs := heaptest.NewServer(t, heapOpts...)
	core, logs := observer.New(zap.DebugLevel)
	h := identityfeed.NewHandler(identityfeed.Config{
		Sources: testSources(t),
		Topic:   topics.Identities,
		HeapURL: hs.URL,
		Heap:    &heap.Client{Timeout: 5 * time.Second},
		Log:     zap.New(core),
	}, pub)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{srv: srv, heap: hs, topic: topics.Identities, brokers: brokers, logs: logs}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) post(t *testing.T, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+identityfeed.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return a
}

// table reads heap.identities: email key -> identity, per record key.
func (e *env) table(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab, err := kafka.ReadTable(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range tab {
		m, err := identity.Decode(v)
		if err != nil {
			t.Fatalf("record %q: %v", k, err)
		}
		if k != string(identity.RecordKey(m.App, m.EmailKey)) {
			t.Errorf("record key %q does not match its value's app and email key", k)
		}
		got[k] = m.Identity
	}
	return got
}

// key is the heap.identities key of email in app.
func key(app, email string) string { return string(identity.RecordKey(app, events.EmailKey(email))) }

func bearer(tok string) string { return "Bearer " + tok }

func single(app, ident string, props map[string]any) string {
	b, _ := json.Marshal(map[string]any{"app_id": app, "identity": ident, "properties": props})
	return string(b)
}

func bulk(app string, users ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"app_id": app, "users": users})
	return string(b)
}

func user(ident string, props map[string]any) map[string]any {
	return map[string]any{"identity": ident, "properties": props}
}

func email(addr string) map[string]any { return map[string]any{"email": addr} }

func manyUsers(n int) []map[string]any {
	us := make([]map[string]any, n)
	for i := range us {
		us[i] = user(fmt.Sprintf("user-%d", i), email(fmt.Sprintf("u%d@example.com", i)))
	}
	return us
}

func TestFeed(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	long := strings.Repeat("é", heap.MaxIdentityLen+1)
	at255 := strings.Repeat("é", heap.MaxIdentityLen)
	type tc struct {
		name     string
		token    string // Authorization header value
		body     string
		status   int
		errPart  string            // part of the error for a refusal
		recorded map[string]string // the whole heap.identities table afterwards
		skipped  []any             // the answer's skipped list, as JSON
		forward  bool              // the answer says forwarded, and Heap got the users
	}
	for _, c := range []tc{
		{name: "single", token: bearer(tokAcme), body: single("app1", "User-1", email("alice@example.com")),
			status: 200, recorded: map[string]string{key("app1", "alice@example.com"): "User-1"}},
		{name: "bulk", token: bearer(tokAcme), body: bulk("app1", user("u1", email("a@example.com")), user("U2", map[string]any{"email": "b@example.com", "plan": "pro"})),
			status: 200, recorded: map[string]string{key("app1", "a@example.com"): "u1", key("app1", "b@example.com"): "U2"}},
		{name: "email case and spaces: same key, identity case kept", token: bearer(tokAcme),
			body:   single("app1", "MiXeD-Case-ID", email("  Alice@Example.COM \t")),
			status: 200, recorded: map[string]string{key("app1", "alice@example.com"): "MiXeD-Case-ID"}},
		{name: "1000 users", token: bearer(tokAcme), body: bulk("app1", manyUsers(1000)...), status: 200, recorded: func() map[string]string {
			m := map[string]string{}
			for i := range 1000 {
				m[key("app1", fmt.Sprintf("u%d@example.com", i))] = fmt.Sprintf("user-%d", i)
			}
			return m
		}()},
		{name: "identity of 255 characters", token: bearer(tokAcme), body: single("app1", at255, email("a@example.com")),
			status: 200, recorded: map[string]string{key("app1", "a@example.com"): at255}},
		{name: "missing, non-string, empty or non-address email: skipped and reported", token: bearer(tokAcme),
			body: bulk("app1",
				user("u0", map[string]any{"name": "x"}),
				user("u1", map[string]any{"email": 42}),
				user("u2", email("a@example.com")),
				user("u3", email("   ")),
				user("u4", email("not-an-address")),
				user("u5", nil)),
			status:   200,
			recorded: map[string]string{key("app1", "a@example.com"): "u2"},
			skipped: []any{
				map[string]any{"index": 0.0, "reason": `no "email" property`},
				map[string]any{"index": 1.0, "reason": `"email" property is not a string`},
				map[string]any{"index": 3.0, "reason": `"email" is empty`},
				map[string]any{"index": 4.0, "reason": `"email" is not an email address`},
				map[string]any{"index": 5.0, "reason": `no "email" property`},
			}},
		{name: "without forwarding other property values are not checked", token: bearer(tokAcme),
			body:   single("app1", "u1", map[string]any{"email": "a@example.com", "vip": true}),
			status: 200, recorded: map[string]string{key("app1", "a@example.com"): "u1"}},

		{name: "no token", body: single("app1", "u1", email("a@example.com")), status: 401, errPart: "missing bearer token"},
		{name: "wrong token", token: bearer("not-the-token-at-all"), body: single("app1", "u1", email("a@example.com")), status: 401, errPart: "invalid bearer token"},
		{name: "token prefix", token: bearer(tokAcme[:10]), body: single("app1", "u1", email("a@example.com")), status: 401, errPart: "invalid bearer token"},
		{name: "basic auth", token: "Basic " + tokAcme, body: single("app1", "u1", email("a@example.com")), status: 401, errPart: "missing bearer token"},
		{name: "another source's app", token: bearer(tokAcme), body: single("app2", "u1", email("a@example.com")), status: 403, errPart: "app_id"},
		{name: "no app_id", token: bearer(tokAcme), body: `{"identity":"u1","properties":{"email":"a@example.com"}}`, status: 400, errPart: "app_id is required"},
		{name: "1001 users", token: bearer(tokAcme), body: bulk("app1", manyUsers(1001)...), status: 400, errPart: "at most 1000 users per request, got 1001"},
		{name: "identity of 256 characters records nothing", token: bearer(tokAcme),
			body:   bulk("app1", user("u0", email("a@example.com")), user(long, email("b@example.com"))),
			status: 400, errPart: "users[1]: identity longer than 255 characters"},
		{name: "empty identity", token: bearer(tokAcme), body: bulk("app1", user("", email("a@example.com"))), status: 400, errPart: "users[0]: identity is required"},
		{name: "missing identity", token: bearer(tokAcme), body: `{"app_id":"app1","properties":{"email":"a@example.com"}}`, status: 400, errPart: "identity is required"},
		{name: "identity with surrounding spaces", token: bearer(tokAcme), body: single("app1", " u1", email("a@example.com")), status: 400, errPart: "leading or trailing spaces"},
		{name: "both shapes", token: bearer(tokAcme), body: `{"app_id":"app1","identity":"u","properties":{},"users":[]}`, status: 400, errPart: "not both"},
		{name: "empty users", token: bearer(tokAcme), body: `{"app_id":"app1","users":[]}`, status: 400, errPart: "users must not be empty"},
		{name: "not JSON", token: bearer(tokAcme), body: `{"app_id":"app1",`, status: 400, errPart: "invalid JSON"},

		{name: "forwarded", token: bearer(tokFwd), body: bulk("app2", user("F1", map[string]any{"email": "f1@example.com", "plan": "pro"}), user("f2", map[string]any{"plan": "free"})),
			status: 200, forward: true,
			recorded: map[string]string{key("app2", "f1@example.com"): "F1"},
			skipped:  []any{map[string]any{"index": 1.0, "reason": `no "email" property`}}},
		{name: "forwarding: what Heap refuses is refused before recording", token: bearer(tokFwd),
			body:   bulk("app2", user("f1", email("f1@example.com")), user("f2", map[string]any{"email": "f2@example.com", "vip": true})),
			status: 400, errPart: `users[1]: property "vip" must be a string or a number`},
		{name: "forwarding: properties required", token: bearer(tokFwd), body: `{"app_id":"app2","identity":"f1"}`, status: 400, errPart: "properties is required"},
		{name: "joins on identity: accepted and forwarded, nothing recorded", token: bearer(tokIdent),
			body: single("app3", "c@example.com", map[string]any{"plan": "pro"}), status: 200, forward: true, recorded: map[string]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, brokers, nil)
			a := e.post(t, c.token, c.body)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.raw)
			}
			if c.status != 200 {
				if msg, _ := a.body["error"].(string); !strings.Contains(msg, c.errPart) {
					t.Errorf("error %q, want it to contain %q", msg, c.errPart)
				}
				if c.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", a.header.Get("WWW-Authenticate"))
				}
			} else {
				if got := a.body["recorded"]; got != float64(len(c.recorded)) {
					t.Errorf("recorded %v, want %d", got, len(c.recorded))
				}
				skipped := c.skipped
				if skipped == nil {
					skipped = []any{}
				}
				if diff := cmp.Diff(skipped, a.body["skipped"]); diff != "" {
					t.Errorf("skipped (-want +got):\n%s", diff)
				}
				if a.body["forwarded"] != c.forward {
					t.Errorf("forwarded %v, want %v", a.body["forwarded"], c.forward)
				}
			}
			// Read right after the answer: a 2xx means already acknowledged.
			want := c.recorded
			if want == nil {
				want = map[string]string{}
			}
			if diff := cmp.Diff(want, e.table(t)); diff != "" {
				t.Errorf("heap.identities (-want +got):\n%s", diff)
			}
			wantUsers := 0
			if c.forward {
				var body struct{ Users []any }
				json.Unmarshal([]byte(c.body), &body)
				wantUsers = max(1, len(body.Users))
			}
			if got := len(e.heap.AcceptedUsers()); got != wantUsers {
				t.Errorf("Heap got %d users, want %d", got, wantUsers)
			}
			noSecretsLogged(t, e.logs)
		})
	}
}

// noSecretsLogged fails t when a log entry holds an address or a token.
func noSecretsLogged(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	if logs.Len() == 0 {
		t.Error("nothing logged")
	}
	for _, en := range logs.All() {
		b, _ := json.Marshal(en.ContextMap())
		line := en.Message + " " + string(b)
		for _, secret := range []string{"@", "example.com", tokAcme, tokFwd, tokIdent, "token-0123"} {
			if strings.Contains(strings.ToLower(line), strings.ToLower(secret)) {
				t.Errorf("log entry holds %q: %s", secret, line)
			}
		}
	}
}

func TestFeedMethodNotAllowed(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	resp, err := http.Get(e.srv.URL + identityfeed.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d Allow=%q, want 405 Allow=POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestFeedBodyTooLarge(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	body := `{"app_id":"app1","identity":"u","properties":{"email":"a@example.com","pad":"` + strings.Repeat("x", identityfeed.MaxBody) + `"}}`
	if a := e.post(t, bearer(tokAcme), body); a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", a.status, a.raw)
	}
	if got := e.table(t); len(got) != 0 {
		t.Errorf("%d mappings recorded from a refused body", len(got))
	}
}

// Kafka refusing the write: 503, nothing claims success, nothing forwarded.
func TestFeedPublishFails(t *testing.T) {
	pub := &failingPublisher{}
	e := newEnv(t, kafkatest.Brokers(t), pub)
	for _, tok := range []string{tokAcme, tokFwd} {
		app := map[string]string{tokAcme: "app1", tokFwd: "app2"}[tok]
		a := e.post(t, bearer(tok), single(app, "u1", email("a@example.com")))
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Fatalf("status %d Retry-After %q, want 503 with Retry-After: %s", a.status, a.header.Get("Retry-After"), a.raw)
		}
		if _, ok := a.body["recorded"]; ok {
			t.Errorf("a failed write answers with a recorded count: %s", a.raw)
		}
	}
	if pub.calls.Load() != 2 {
		t.Errorf("publisher called %d times, want 2", pub.calls.Load())
	}
	if st := e.heap.UserStats(); st.Requests != 0 {
		t.Errorf("Heap got %d calls for identities that were not recorded", st.Requests)
	}
	noSecretsLogged(t, e.logs)
}

func TestFeedForwardRefused(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	brokers := kafkatest.Brokers(t)
	body := single("app2", "F1", email("f1@example.com"))
	recorded := map[string]string{key("app2", "f1@example.com"): "F1"}
	for _, c := range []struct {
		name       string
		fault      heaptest.Fault
		status     int
		retryAfter string
		errPart    string
	}{
		{"429 with Retry-After", heaptest.Fault{Status: 429, RetryAfter: "7"}, 503, "7", "retry it"},
		{"500 without Retry-After", heaptest.Fault{Status: 500}, 503, "1", "heap: 500 Internal Server Error (empty body)"},
		{"timeout", heaptest.Fault{Status: 200, Delay: time.Minute}, 503, "1", "timeout"},
		// Heap's answer may quote the caller's values: the caller gets it
		// with addresses redacted, as logs and dead letters would.
		{"400", heaptest.Fault{Status: 400, Body: `{"error":"bad property email=f1@example.com"}`}, 502, "",
			`heap: 400 Bad Request: {"error":"bad property email=[address]"} (body sha256:`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A bound shorter than the fault's delay: Heap "times out".
			e := newEnvTimeout(t, brokers, 2*time.Second)
			e.heap.Inject(c.fault)
			a := e.post(t, bearer(tokFwd), body)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.raw)
			}
			if got := a.header.Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if msg, _ := a.body["error"].(string); !strings.Contains(msg, c.errPart) || !strings.Contains(msg, "recorded") {
				t.Errorf("error %q, want it to contain %q and say what was recorded", msg, c.errPart)
			} else if strings.Contains(msg, "@") {
				t.Errorf("error %q holds an address", msg)
			}
			if a.body["forwarded"] != false || a.body["recorded"] != 1.0 {
				t.Errorf("forwarded %v recorded %v, want false and 1", a.body["forwarded"], a.body["recorded"])
			}
			if diff := cmp.Diff(recorded, e.table(t)); diff != "" {
				t.Errorf("heap.identities (-want +got):\n%s", diff)
			}
			// The caller's retry records again (harmless) and is forwarded.
			if a := e.post(t, bearer(tokFwd), body); a.status != 200 || a.body["forwarded"] != true {
				t.Fatalf("retry: %d %s, want 200 forwarded", a.status, a.raw)
			}
			if diff := cmp.Diff(recorded, e.table(t)); diff != "" {
				t.Errorf("heap.identities after the retry (-want +got):\n%s", diff)
			}
			noSecretsLogged(t, e.logs)
		})
	}
}

func newEnvTimeout(t *testing.T, brokers []string, timeout time.Duration) *env {
	t.Helper()
	e := newEnv(t, brokers, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	core, logs := observer.New(zap.DebugLevel)
	h := identityfeed.NewHandler(identityfeed.Config{
		Sources: testSources(t), Topic: e.topic, HeapURL: e.heap.URL,
		Heap: &heap.Client{Timeout: timeout}, Log: zap.New(core),
	}, kafka.Producer{Client: cl})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.srv, e.logs = srv, logs
	return e
}

// Heap's own limit (30 calls per 30 s per identity) reaches the caller as a
// 503 with Heap's Retry-After.
func TestFeedForwardRateLimited(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	body := single("app2", "busy-user", email("busy@example.com"))
	for i := range heap.UserPropertiesPerIdentity {
		if a := e.post(t, bearer(tokFwd), body); a.status != 200 {
			t.Fatalf("call %d: %d %s", i+1, a.status, a.raw)
		}
	}
	a := e.post(t, bearer(tokFwd), body)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("call 31: %d Retry-After %q, want 503 with Retry-After: %s", a.status, a.header.Get("Retry-After"), a.raw)
	}
	if st := e.heap.UserStats(); st.Throttled != 1 || st.Accepted != heap.UserPropertiesPerIdentity {
		t.Errorf("Heap stats %+v, want 1 throttled and 30 accepted", st)
	}
}

// Heap is called only once Kafka acknowledged the mapping.
func TestFeedForwardsAfterAck(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	var acked atomic.Bool
	var heapSawUnacked atomic.Bool
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	pub := publisherFunc(func(ctx context.Context, recs ...*kgo.Record) error {
		err := cl.ProduceSync(ctx, recs...).FirstErr()
		acked.Store(err == nil)
		return err
	})
	e := newEnv(t, brokers, pub, heaptest.UserFaultFunc(func(heap.UserPropertiesRequest) *heaptest.Fault {
		if !acked.Load() {
			heapSawUnacked.Store(true)
		}
		return nil
	}))
	if a := e.post(t, bearer(tokFwd), single("app2", "F1", email("f1@example.com"))); a.status != 200 || a.body["forwarded"] != true {
		t.Fatalf("%d %s, want 200 forwarded", a.status, a.raw)
	}
	if heapSawUnacked.Load() {
		t.Error("Heap got the call before Kafka acknowledged the mapping")
	}
}

type publisherFunc func(ctx context.Context, recs ...*kgo.Record) error

func (f publisherFunc) Publish(ctx context.Context, recs ...*kgo.Record) error {
	return f(ctx, recs...)
}

// The latest call for an address wins, whatever its case and spacing.
func TestFeedLatestMappingWins(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	for _, c := range []struct{ ident, addr string }{
		{"First", "alice@example.com"},
		{"Second", " ALICE@example.com"},
	} {
		if a := e.post(t, bearer(tokAcme), single("app1", c.ident, email(c.addr))); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.raw)
		}
	}
	if diff := cmp.Diff(map[string]string{key("app1", "alice@example.com"): "Second"}, e.table(t)); diff != "" {
		t.Errorf("heap.identities (-want +got):\n%s", diff)
	}
}
