package connect_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/connect"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/poller"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

const operatorToken = "op-token-0123456789abcdef"

// browser is one user agent: its own cookies, redirects not followed.
type browser struct{ c *http.Client }

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{&http.Client{Jar: jar, CheckRedirect: noRedirect}}
}

// get fetches u with the given header pairs (name, value, ...).
func (b *browser) get(t *testing.T, u string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// savedTokens is a TokenSaver that remembers what it was given.
type savedTokens struct {
	mu  sync.Mutex
	got []tokens.Token
}

func (s *savedTokens) Save(_ context.Context, _ string, t tokens.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, t)
	return nil
}

func (s *savedTokens) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// rig is a connect handler on a test server, facing a Mailchimp stand-in.
type rig struct {
	srv   *httptest.Server
	mc    *mailchimptest.Server
	saved *savedTokens
	logs  *observer.ObservedLogs
}

// newRig serves connect for src; edit changes the Config before use.
func newRig(t *testing.T, src source.Source, edit func(*connect.Config), opts ...mailchimptest.Option) *rig {
	t.Helper()
	ss, err := source.New(src)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{mc: mailchimptest.NewServer(t, opts...), saved: &savedTokens{}}
	core, logs := observer.New(zap.DebugLevel)
	r.logs = logs
	mux := http.NewServeMux()
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	cfg := connect.Config{
		ClientID: mailchimptest.DefaultClientID, ClientSecret: mailchimptest.DefaultClientSecret,
		RedirectURL: r.srv.URL + "/connect/mailchimp/callback", LoginURL: r.mc.URL, StateKey: []byte("state-key"),
		OperatorToken: operatorToken, Sources: ss, Tokens: r.saved, Once: status.NewStore(redistest.Client(t)),
		Log: zap.New(core),
	}
	if edit != nil {
		edit(&cfg)
	}
	mux.Handle("/", connect.Handler(cfg))
	return r
}

// begin starts a connection of source in b and lets the stand-in approve
// it: the callback URL Mailchimp sends b back to.
func (r *rig) begin(t *testing.T, b *browser, source string) string {
	t.Helper()
	resp := b.get(t, r.srv.URL+"/connect/mailchimp/"+source, "Authorization", "Bearer "+operatorToken)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), r.mc.URL+"/oauth2/authorize?") {
		t.Fatalf("connect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = b.get(t, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// cookies are b's cookies for the connect server.
func (r *rig) cookies(b *browser) []*http.Cookie {
	u, _ := url.Parse(r.srv.URL)
	return b.c.Jar.Cookies(u)
}

// noSecrets fails when a secret reached the log.
func noSecrets(t *testing.T, logs *observer.ObservedLogs, secrets ...string) {
	t.Helper()
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(e.Message+string(b), s) {
				t.Fatalf("a secret reached the log: %s %s", e.Message, b)
			}
		}
	}
}

// acme names an API URL, the explicit override under which connect takes
// the stand-in's own api_endpoint; connect never calls it.
var acme = source.Source{ID: "acme", HeapAppID: "app", MailchimpOAuth: true, MailchimpAPIURL: "http://127.0.0.1:1/3.0"}

// TestConnectRoundTrip: Connect Mailchimp → authorize → callback → token
// stored encrypted → the poller polls with it; forged and expired states are
// refused; a revoked token marks the source "reconnect needed". The source
// names the stand-in as its mailchimp_api_url, the explicit override that
// lets a token's api_endpoint be other than Mailchimp's.
func TestConnectRoundTrip(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 1)
	mc := mailchimptest.NewServer(t)
	mc.LoadFixtures()
	rdb := redistest.PrivateClient(t) // source status keys are not prefixed per test
	sts := status.NewStore(rdb)
	ss, err := source.New(source.Source{ID: "acme", HeapAppID: "app", MailchimpOAuth: true, MailchimpAPIURL: mc.APIURL,
		ActivityWindow: 3650 * 24 * time.Hour})
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
		OperatorToken: operatorToken, Sources: ss, Tokens: store, States: sts, Once: sts, Log: zap.New(core),
		Now: func() time.Time { return clock() },
	}))

	b := newBrowser(t)
	if resp := b.get(t, srv.URL+"/connect/mailchimp/nobody?token="+operatorToken); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown source: %d", resp.StatusCode)
	}
	resp := b.get(t, srv.URL+"/connect/mailchimp/acme?token="+operatorToken)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), mc.URL+"/oauth2/authorize?") {
		t.Fatalf("connect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if strings.Contains(resp.Header.Get("Location"), operatorToken) {
		t.Fatal("the operator token went on to Mailchimp")
	}
	resp = b.get(t, resp.Header.Get("Location")) // Mailchimp approves and sends the user back
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
		if r := b.get(t, srv.URL+"/connect/mailchimp/callback?"+q.Encode()); r.StatusCode != http.StatusBadRequest {
			t.Errorf("state %q accepted: %d", s, r.StatusCode)
		}
	}
	clock = func() time.Time { return now.Add(11 * time.Minute) }
	if r := b.get(t, back.String()); r.StatusCode != http.StatusBadRequest {
		t.Errorf("expired state accepted: %d", r.StatusCode)
	}
	clock = func() time.Time { return now }
	if r := b.get(t, back.String()); r.StatusCode != http.StatusOK {
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
	noSecrets(t, logs, tok.AccessToken, mailchimptest.DefaultClientSecret, operatorToken, back.Query().Get("code"))
}

// TestConnectStartNeedsOperator: starting a connection takes the operator
// token (STATUS_TOKEN); without one configured it is refused unless the
// handler allows it (the embedded stack). A refusal sets no cookie.
func TestConnectStartNeedsOperator(t *testing.T) {
	tests := []struct {
		name     string
		operator string
		allow    bool
		path     string
		header   []string
		want     int
		wantBody string
	}{
		{name: "no credential", operator: operatorToken, path: "acme", want: http.StatusUnauthorized},
		{name: "wrong bearer", operator: operatorToken, path: "acme", header: []string{"Authorization", "Bearer nope"}, want: http.StatusUnauthorized},
		{name: "prefix of the token", operator: operatorToken, path: "acme?token=" + operatorToken[:10], want: http.StatusUnauthorized},
		{name: "token and more", operator: operatorToken, path: "acme?token=" + operatorToken + "x", want: http.StatusUnauthorized},
		{name: "empty bearer", operator: operatorToken, path: "acme", header: []string{"Authorization", "Bearer "}, want: http.StatusUnauthorized},
		{name: "basic auth", operator: operatorToken, path: "acme", header: []string{"Authorization", "Basic " + operatorToken}, want: http.StatusUnauthorized},
		{name: "wrong bearer beats right query", operator: operatorToken, path: "acme?token=" + operatorToken, header: []string{"Authorization", "Bearer nope"}, want: http.StatusUnauthorized},
		{name: "unknown source without token", operator: operatorToken, path: "nobody", want: http.StatusUnauthorized},
		{name: "token configured wins over allow", operator: operatorToken, allow: true, path: "acme", want: http.StatusUnauthorized},
		{name: "bearer", operator: operatorToken, path: "acme", header: []string{"Authorization", "Bearer " + operatorToken}, want: http.StatusFound},
		{name: "bearer scheme in lower case", operator: operatorToken, path: "acme", header: []string{"Authorization", "bearer " + operatorToken}, want: http.StatusFound},
		{name: "query token", operator: operatorToken, path: "acme?token=" + url.QueryEscape(operatorToken), want: http.StatusFound},
		{name: "unknown source with token", operator: operatorToken, path: "nobody?token=" + operatorToken, want: http.StatusNotFound},
		{name: "no operator token configured", path: "acme", want: http.StatusForbidden, wantBody: "set STATUS_TOKEN to connect sources"},
		{name: "no operator token, any token", path: "acme?token=x", want: http.StatusForbidden},
		{name: "no operator token, unauthenticated allowed", allow: true, path: "acme", want: http.StatusFound},
	}
	r := newRig(t, acme, nil) // the stand-in and Redis, shared by the cases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.Handle("/", connect.Handler(connect.Config{
				ClientID: mailchimptest.DefaultClientID, RedirectURL: "http://127.0.0.1/connect/mailchimp/callback",
				LoginURL: r.mc.URL, StateKey: []byte("k"), OperatorToken: tt.operator, AllowUnauthenticated: tt.allow,
				Sources: mustSources(t, acme), Tokens: r.saved, Log: zap.NewNop(),
			}))
			req := httptest.NewRequest(http.MethodGet, "/connect/mailchimp/"+tt.path, nil)
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q lacks %q", rec.Body, tt.wantBody)
			}
			if got := rec.Header().Get("Set-Cookie"); (got != "") != (tt.want == http.StatusFound) {
				t.Errorf("Set-Cookie %q on a %d", got, rec.Code)
			}
			if rec.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Error("the start answer lets the query token leak in a Referer")
			}
		})
	}
}

func mustSources(t *testing.T, src ...source.Source) *source.Sources {
	t.Helper()
	ss, err := source.New(src...)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// TestConnectCookie: the nonce cookie is HttpOnly and SameSite=Lax, and
// Secure with the __Host- prefix when the service is reached over https.
func TestConnectCookie(t *testing.T) {
	tests := []struct {
		redirect   string
		wantName   string
		wantSecure bool
	}{
		{"http://127.0.0.1:8080/connect/mailchimp/callback", "mh_connect_acme", false},
		{"https://hooks.example.com/connect/mailchimp/callback", "__Host-mh_connect_acme", true},
	}
	for _, tt := range tests {
		t.Run(tt.redirect, func(t *testing.T) {
			h := connect.Handler(connect.Config{
				ClientID: "c", RedirectURL: tt.redirect, StateKey: []byte("k"), OperatorToken: operatorToken,
				Sources: mustSources(t, acme), Log: zap.NewNop(),
			})
			req := httptest.NewRequest(http.MethodGet, "/connect/mailchimp/acme?token="+operatorToken, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			cs := rec.Result().Cookies()
			if rec.Code != http.StatusFound || len(cs) != 1 {
				t.Fatalf("%d with cookies %v", rec.Code, cs)
			}
			c := cs[0]
			if c.Name != tt.wantName || c.Secure != tt.wantSecure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode ||
				c.Path != "/" || c.Domain != "" || c.MaxAge <= 0 || len(c.Value) < 32 {
				t.Fatalf("cookie %s", c)
			}
			if strings.Contains(rec.Header().Get("Location"), c.Value) {
				t.Fatal("the nonce itself travels in the state")
			}
		})
	}
}

// TestConnectBrowserBinding: a callback is accepted only from the browser
// that started the connection; a refused one spends nothing, so the right
// browser can still finish.
func TestConnectBrowserBinding(t *testing.T) {
	tests := []struct {
		name    string
		callers func(t *testing.T, r *rig, victim *browser) *browser
	}{
		{name: "no cookie", callers: func(t *testing.T, _ *rig, _ *browser) *browser { return newBrowser(t) }},
		{name: "another browser's cookie", callers: func(t *testing.T, r *rig, _ *browser) *browser {
			other := newBrowser(t)
			r.begin(t, other, "acme") // it holds a cookie of its own for the same source
			return other
		}},
		{name: "forged cookie", callers: func(t *testing.T, r *rig, victim *browser) *browser {
			forger := newBrowser(t)
			u, _ := url.Parse(r.srv.URL)
			forger.c.Jar.SetCookies(u, []*http.Cookie{{Name: "mh_connect_acme", Value: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Path: "/"}})
			return forger
		}},
		{name: "cookie of another source", callers: func(t *testing.T, r *rig, victim *browser) *browser {
			moved := newBrowser(t)
			u, _ := url.Parse(r.srv.URL)
			for _, c := range r.cookies(victim) {
				moved.c.Jar.SetCookies(u, []*http.Cookie{{Name: strings.Replace(c.Name, "acme", "shop", 1), Value: c.Value, Path: "/"}})
			}
			return moved
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, acme, nil)
			victim := newBrowser(t)
			back := r.begin(t, victim, "acme")
			intruder := tt.callers(t, r, victim)
			if resp := intruder.get(t, back); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("callback from another browser: %d, want 400", resp.StatusCode)
			}
			if n := r.saved.count(); n != 0 {
				t.Fatalf("%d tokens stored from another browser's callback", n)
			}
			if n := r.mc.Requests("/oauth2/token"); n != 0 {
				t.Fatalf("the code was exchanged (%d) for another browser", n)
			}
			if resp := victim.get(t, back); resp.StatusCode != http.StatusOK {
				t.Fatalf("the starting browser's callback: %d", resp.StatusCode)
			}
			if n := r.saved.count(); n != 1 {
				t.Fatalf("%d tokens stored, want 1", n)
			}
			if len(r.cookies(victim)) != 0 {
				t.Error("the nonce cookie outlived the callback")
			}
		})
	}
}

// TestConnectStateSingleUse: a state is good once, even with its cookie;
// a replay is refused before Mailchimp is asked and stores nothing.
func TestConnectStateSingleUse(t *testing.T) {
	tests := []struct {
		name string
		want int // of the first use
	}{
		{name: "after a connection", want: http.StatusOK},
		{name: "after Mailchimp's refusal", want: http.StatusBadRequest}, // ?error=access_denied
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, acme, nil)
			b := newBrowser(t)
			back := r.begin(t, b, "acme")
			if tt.want != http.StatusOK {
				u, _ := url.Parse(back)
				q := u.Query()
				q.Set("error", "access_denied")
				u.RawQuery = q.Encode()
				back = u.String()
			}
			cookies := r.cookies(b) // kept, as an attacker who copied them would
			if resp := b.get(t, back); resp.StatusCode != tt.want {
				t.Fatalf("first use: %d, want %d", resp.StatusCode, tt.want)
			}
			saved, exchanged := r.saved.count(), r.mc.Requests("/oauth2/token")
			for i := range 2 {
				again := newBrowser(t)
				u, _ := url.Parse(r.srv.URL)
				again.c.Jar.SetCookies(u, cookies)
				if resp := again.get(t, back); resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("replay %d: %d, want 400", i+1, resp.StatusCode)
				}
			}
			if n := r.saved.count(); n != saved {
				t.Fatalf("a replay stored a token (%d, then %d)", saved, n)
			}
			if n := r.mc.Requests("/oauth2/token"); n != exchanged {
				t.Fatalf("a replay reached Mailchimp's token endpoint (%d, then %d)", exchanged, n)
			}
			replayLogged := false
			for _, e := range r.logs.All() {
				if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, connect.ErrReplay.Error()) {
					replayLogged = true
				}
			}
			if !replayLogged {
				t.Error("the replay's reason was not logged")
			}
			noSecrets(t, r.logs, operatorToken, mailchimptest.DefaultClientSecret)
		})
	}
}

// TestConnectSingleUseNeedsStore: without a store of used states every
// callback is refused rather than left replayable.
func TestConnectSingleUseNeedsStore(t *testing.T) {
	r := newRig(t, acme, func(c *connect.Config) { c.Once = nil })
	b := newBrowser(t)
	if resp := b.get(t, r.begin(t, b, "acme")); resp.StatusCode/100 == 2 {
		t.Fatalf("callback without a store of used states: %d", resp.StatusCode)
	}
	if r.saved.count() != 0 {
		t.Fatal("a token was stored")
	}
}

// TestConnectAPIEndpoint: a token is stored only when Mailchimp's metadata
// names one of Mailchimp's API hosts, unless the source sets its
// mailchimp_api_url (the explicit override).
func TestConnectAPIEndpoint(t *testing.T) {
	tests := []struct {
		name     string
		dc       string
		endpoint string
		override bool
		want     bool // stored
	}{
		{name: "mailchimp", dc: "us21", endpoint: "https://us21.api.mailchimp.com", want: true},
		{name: "another host", dc: "us21", endpoint: "https://evil.example"},
		{name: "plain http", dc: "us21", endpoint: "http://us21.api.mailchimp.com"},
		{name: "mailchimp name as a subdomain", dc: "us21", endpoint: "https://us21.api.mailchimp.com.evil.example"},
		{name: "another dc's host", dc: "us21", endpoint: "https://us6.api.mailchimp.com"},
		{name: "dc that is a host", dc: "evil.example#", endpoint: "https://us21.api.mailchimp.com"},
		{name: "the stand-in without override", dc: "us21"}, // api_endpoint: the stand-in's http URL
		{name: "override", dc: "us21", endpoint: "https://evil.example", override: true, want: true},
		{name: "the stand-in with override", dc: "us21", override: true, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []mailchimptest.Option{mailchimptest.WithDC(tt.dc)}
			if tt.endpoint != "" {
				opts = append(opts, mailchimptest.WithAPIEndpoint(tt.endpoint))
			}
			src := acme
			if !tt.override {
				src.MailchimpAPIURL = ""
			}
			r := newRig(t, src, nil, opts...)
			b := newBrowser(t)
			resp := b.get(t, r.begin(t, b, "acme"))
			if stored := r.saved.count() == 1; stored != tt.want || (resp.StatusCode == http.StatusOK) != tt.want {
				t.Fatalf("status %d, stored %v; want stored %v", resp.StatusCode, stored, tt.want)
			}
			if !tt.want && resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
		})
	}
}
