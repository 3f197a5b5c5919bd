package connect_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/connect"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/poller"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) *http.Response {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestConnectRoundTrip: Connect Mailchimp → authorize → callback → token
// stored encrypted → the poller polls with it; forged and expired states are
// refused; a revoked token marks the source "reconnect needed".
func TestConnectRoundTrip(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 1)
	mc := mailchimptest.NewServer(t)
	mc.LoadFixtures()
	rdb := redistest.PrivateClient(t) // source status keys are not prefixed per test
	sts := status.NewStore(rdb)
	ss, err := config.NewSources(config.Source{ID: "acme", HeapAppID: "app", MailchimpOAuth: true, ActivityWindow: 3650 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	key := []byte("0123456789abcdef0123456789abcdef")
	store, err := tokens.NewStore(key, topics.Tokens, cl, []kgo.Opt{kgo.SeedBrokers(brokers...)})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	now := time.Now()
	clock := func() time.Time { return now }
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.Handle("/", connect.Handler(connect.Config{
		ClientID: mailchimptest.DefaultClientID, ClientSecret: mailchimptest.DefaultClientSecret,
		RedirectURL: srv.URL + "/connect/mailchimp/callback", LoginURL: mc.URL, StateKey: []byte("state-key"),
		Sources: ss, Tokens: store, States: sts, Log: zap.New(core), Now: func() time.Time { return clock() },
	}))

	if resp := get(t, srv.URL+"/connect/mailchimp/nobody"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown source: %d", resp.StatusCode)
	}
	resp := get(t, srv.URL+"/connect/mailchimp/acme")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), mc.URL+"/oauth2/authorize?") {
		t.Fatalf("connect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = get(t, resp.Header.Get("Location")) // Mailchimp approves and sends the user back
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d %v", resp.StatusCode, err)
	}
	state := back.Query().Get("state")

	forged := []string{
		"", "garbage", state + "x",
		strings.Replace(state, state[:4], "AAAA", 1),
	}
	for _, s := range forged {
		q := back.Query()
		q.Set("state", s)
		if r := get(t, srv.URL+"/connect/mailchimp/callback?"+q.Encode()); r.StatusCode != http.StatusBadRequest {
			t.Errorf("state %q accepted: %d", s, r.StatusCode)
		}
	}
	clock = func() time.Time { return now.Add(11 * time.Minute) }
	if r := get(t, back.String()); r.StatusCode != http.StatusBadRequest {
		t.Errorf("expired state accepted: %d", r.StatusCode)
	}
	clock = func() time.Time { return now }
	if r := get(t, back.String()); r.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d", r.StatusCode)
	}

	ctx := context.Background()
	tok, ok, err := store.Get(ctx, "acme")
	if err != nil || !ok || tok.AccessToken == "" || tok.DC == "" {
		t.Fatalf("stored token %v ok=%v err=%v", tok, ok, err)
	}
	// Encrypted at rest: the raw topic does not hold the token.
	recs := kafkatest.Consume(t, brokers, topics.Tokens, 1, 10*time.Second)
	if strings.Contains(string(recs[0].Value), tok.AccessToken) {
		t.Fatal("token stored in clear")
	}
	other, _ := tokens.NewStore([]byte("fedcba9876543210fedcba9876543210"), topics.Tokens, cl, []kgo.Opt{kgo.SeedBrokers(brokers...)})
	if _, _, err := other.Get(ctx, "acme"); err == nil {
		t.Fatal("a wrong TOKEN_KEY decrypted the token")
	}

	p, err := poller.New(poller.Config{Brokers: brokers, Topics: topics, TransactionID: kafkatest.Prefix(t), Sources: ss,
		Owner: lease.New(rdb, "me"), States: sts, Tokens: store, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	src, _ := ss.Get("acme")
	if err := p.Pass(ctx, src); err != nil {
		t.Fatalf("polling with the OAuth token: %v", err)
	}
	if got := len(kafkatest.Consume(t, brokers, topics.Raw, 8, 20*time.Second)); got != 8 {
		t.Fatalf("%d raw records from the token's account, want 8", got)
	}

	mc.RevokeToken(tok.AccessToken)
	if err := p.Pass(ctx, src); err == nil {
		t.Fatal("a revoked token polled")
	}
	if st, _, _ := sts.State(ctx, "acme"); st != "reconnect_needed" {
		t.Fatalf("state %q, want reconnect_needed", st)
	}
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		if strings.Contains(e.Message+string(b), tok.AccessToken) || strings.Contains(string(b), mailchimptest.DefaultClientSecret) {
			t.Fatalf("a secret reached the log: %s %s", e.Message, b)
		}
	}
}
