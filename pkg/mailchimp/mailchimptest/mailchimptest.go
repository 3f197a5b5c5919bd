// Package mailchimptest is a stand-in for Mailchimp's Marketing API (the
// campaign list and the email-activity report) and its OAuth 2 endpoints. It
// enforces the facts of docs/ARCHITECTURE.md §6 (count at most 1000, ten simultaneous
// connections per account answered 429 or sometimes 403 without a body,
// problem+json errors, a refused token answered HTTP 200
// {"error":"invalid_token"} by the metadata endpoint), records what it saw,
// and injects faults on demand. Tests and the local stack use it.
package mailchimptest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpfault"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

// Limits and defaults of the Marketing API (docs/ARCHITECTURE.md §6.1).
const (
	MaxCount        = 1000 // largest count a list endpoint accepts
	DefaultCount    = 10   // count when the request gives none
	ConcurrentLimit = 10   // simultaneous connections per account

	// DefaultDC is the data center the stand-in claims to be.
	DefaultDC = "us19"
	// DefaultAccount owns DefaultAPIKey and the tokens issued through OAuth.
	DefaultAccount = "default"
	// DefaultAPIKey is always registered, for DefaultAccount.
	DefaultAPIKey = "0123456789abcdef0123456789abcdef-us19"
	// DefaultClientID and DefaultClientSecret are an always-registered OAuth client.
	DefaultClientID     = "361740181422"
	DefaultClientSecret = "9d3bd0ae5d5fae2b8ff2b6b1f1b1e6e2c5f1a1d8b3f2c9e7a4"

	// TimeLayout is how Mailchimp writes times: RFC 3339, UTC as +00:00.
	TimeLayout = "2006-01-02T15:04:05+00:00"

	problemType = "https://mailchimp.com/developer/marketing/docs/errors/"
)

var apiKeyRE = regexp.MustCompile(`^[0-9a-f]+-[a-z]+[0-9]+$`)

// Fault is one injected answer, used for the next Times requests (default 1).
type Fault = httpfault.Fault

// Service is the stand-in's state and its http.Handler. Its zero value is not
// usable; build it with NewService.
type Service struct {
	mu sync.Mutex

	// configuration
	dc           string
	apiEndpoint  string // empty: derived from each request's Host
	limit        int
	forbidFrac   float64
	latency      time.Duration
	loginAccount string
	beforeServe  func(*http.Request)
	faultFn      func(*http.Request) *Fault

	// credentials
	apiKeys map[string]string     // key -> account
	tokens  map[string]*token     // access token -> account and state
	clients map[string]string     // OAuth client id -> secret
	codes   map[string]oauthGrant // authorization code -> its grant

	// data
	campaigns map[string]*Campaign
	order     []string // campaign ids in insertion order
	activity  map[string]*report

	// observations
	requests  map[string]int // URL path -> requests received
	inFlight  map[string]int // account -> admitted requests in flight
	arriving  map[string]int // account -> requests in flight, admitted or being refused
	maxAdmit  map[string]int
	maxArrive map[string]int
	throttled map[string]int
	faults    httpfault.Queue
}

type token struct {
	account string
	revoked bool
}

type oauthGrant struct {
	clientID, redirectURI, account string
}

// Option configures a Service.
type Option func(*Service)

// WithDC sets the data center named by the OAuth metadata (default us19).
func WithDC(dc string) Option { return func(s *Service) { s.dc = dc } }

// WithAPIEndpoint fixes the api_endpoint and login_url the OAuth metadata
// reports (default: the scheme and host each metadata request came to, so a
// client following api_endpoint reaches the stand-in). Use it when the
// Service is mounted under a path prefix.
func WithAPIEndpoint(u string) Option {
	return func(s *Service) { s.apiEndpoint = strings.TrimRight(u, "/") }
}

// WithAPIKey registers an API key (`<hex>-<dc>`, sent as the basic auth
// password) for account. It panics on a key of another shape (a test bug).
func WithAPIKey(account, key string) Option {
	if !apiKeyRE.MatchString(key) {
		panic(fmt.Sprintf("mailchimptest: API key %q is not <hex>-<dc>", key))
	}
	return func(s *Service) { s.apiKeys[key] = account }
}

// WithOAuthClient registers an OAuth client (the app's client id and secret).
func WithOAuthClient(id, secret string) Option {
	return func(s *Service) { s.clients[id] = secret }
}

// WithLoginAccount names the account that approves OAuth authorizations and so
// owns the tokens they yield (default DefaultAccount).
func WithLoginAccount(account string) Option {
	return func(s *Service) { s.loginAccount = account }
}

// WithConcurrencyLimit replaces the ten simultaneous requests per account
// (n <= 0 disables the limit; MaxConcurrent still measures).
func WithConcurrencyLimit(n int) Option { return func(s *Service) { s.limit = n } }

// WithForbiddenFraction answers this fraction (0..1) of over-limit requests
// with 403 and an empty body instead of 429 problem+json, as Mailchimp
// sometimes does. The choice is deterministic: with 0.5, every second one.
func WithForbiddenFraction(f float64) Option {
	return func(s *Service) { s.forbidFrac = min(max(f, 0), 1) }
}

// WithLatency makes every admitted API request take at least d, holding its
// connection slot, so concurrency is observable.
func WithLatency(d time.Duration) Option { return func(s *Service) { s.latency = d } }

// BeforeServe calls fn for each admitted API request while it holds its
// connection slot, before it is answered; a test can block in fn to hold
// requests in flight deterministically.
func BeforeServe(fn func(*http.Request)) Option { return func(s *Service) { s.beforeServe = fn } }

// FaultFunc decides, per admitted API request, an answer to give instead of
// serving it (nil: serve). Use it for faults that depend on the request: one
// campaign that times out, a page that fails.
func FaultFunc(fn func(*http.Request) *Fault) Option { return func(s *Service) { s.faultFn = fn } }

// NewService returns a stand-in with DefaultAPIKey and the default OAuth client
// registered and no data.
func NewService(opts ...Option) *Service {
	s := &Service{
		dc: DefaultDC, limit: ConcurrentLimit, loginAccount: DefaultAccount,
		apiKeys: map[string]string{DefaultAPIKey: DefaultAccount}, tokens: map[string]*token{},
		clients: map[string]string{DefaultClientID: DefaultClientSecret}, codes: map[string]oauthGrant{},
		campaigns: map[string]*Campaign{}, activity: map[string]*report{},
		requests: map[string]int{}, inFlight: map[string]int{}, arriving: map[string]int{},
		maxAdmit: map[string]int{}, maxArrive: map[string]int{}, throttled: map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Server is a Service served over HTTP for a test.
type Server struct {
	*Service
	URL    string // server root: OAuth under URL+"/oauth2", the API under APIURL
	APIURL string // URL + "/3.0", what a client uses in place of https://{dc}.api.mailchimp.com/3.0
}

// NewServer starts a Service on loopback and stops it when the test ends.
func NewServer(t interface{ Cleanup(func()) }, opts ...Option) *Server {
	s := NewService(opts...)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &Server{Service: s, URL: srv.URL, APIURL: srv.URL + "/3.0"}
}

// IssueToken returns a fresh access token for account, as if its owner had
// gone through the OAuth flow.
func (s *Service) IssueToken(account string) string {
	tok := randomHex(16)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = &token{account: account}
	return tok
}

// RevokeToken refuses token from now on: API calls answer 401, the metadata
// endpoint HTTP 200 {"error":"invalid_token"}.
func (s *Service) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tok]; ok {
		t.revoked = true
	}
}

// Inject queues faults for the next API requests (those under /3.0/ that
// authenticated and got a connection slot), answered in order before normal
// service resumes.
func (s *Service) Inject(fs ...Fault) { s.faults.Inject(fs...) }

// ClearFaults drops the faults not answered yet.
func (s *Service) ClearFaults() { s.faults.Clear() }

// Requests returns how many requests arrived on paths starting with prefix
// ("/3.0/campaigns", "/3.0/reports/", "/oauth2/token"), whatever the answer.
func (s *Service) Requests(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.requests {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

// MaxConcurrent returns the most API requests of account that were being
// served at once; the limit caps it, so it never exceeds 10 by default.
func (s *Service) MaxConcurrent(account string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxAdmit[account]
}

// MaxAttempted returns the most API requests of account that were in flight at
// once, counting those being refused for the limit: a client that respects the
// limit keeps it at or under 10.
func (s *Service) MaxAttempted(account string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxArrive[account]
}

// Throttled returns how many API requests of account were refused for the
// concurrency limit (429 or 403).
func (s *Service) Throttled(account string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled[account]
}

func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	s.mu.Unlock()
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/3.0/") || p == "/3.0":
		s.serveAPI(w, r)
	case p == "/oauth2/authorize":
		s.authorize(w, r)
	case p == "/oauth2/token":
		s.tokenExchange(w, r)
	case p == "/oauth2/metadata":
		s.metadata(w, r)
	default:
		writeProblem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
	}
}

func (s *Service) serveAPI(w http.ResponseWriter, r *http.Request) {
	account, title, detail := s.authenticate(r)
	if account == "" {
		writeProblem(w, http.StatusUnauthorized, title, detail)
		return
	}
	release, refusal := s.admit(account)
	defer release()
	switch refusal {
	case http.StatusForbidden:
		w.WriteHeader(http.StatusForbidden)
		return
	case http.StatusTooManyRequests:
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write(fixtures.Read("marketing-api/error-429.json"))
		return
	}
	if s.beforeServe != nil {
		s.beforeServe(r)
	}
	if f, ok := s.faults.Next(); ok {
		httpfault.Answer(w, r, f, "application/problem+json")
		return
	}
	if s.faultFn != nil {
		if f := s.faultFn(r); f != nil {
			httpfault.Answer(w, r, *f, "application/problem+json")
			return
		}
	}
	if !sleep(r, s.latency) {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "The requested method and resource are not compatible. See the Allow header for this resource's available methods.")
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/3.0"), "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "ping":
		writeJSON(w, http.StatusOK, map[string]string{"health_status": "Everything's Chimpy!"})
	case len(parts) == 1 && parts[0] == "campaigns":
		s.listCampaigns(w, r)
	case len(parts) == 2 && parts[0] == "campaigns":
		s.getCampaign(w, parts[1])
	case len(parts) == 3 && parts[0] == "reports" && parts[2] == "email-activity":
		s.emailActivity(w, r, parts[1])
	default:
		writeProblem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
	}
}

// authenticate returns the account of the request's API key (basic auth
// password) or token (Bearer or OAuth scheme), or the problem to answer.
func (s *Service) authenticate(r *http.Request) (account, title, detail string) {
	const invalid = "Your API key may be invalid, or you've attempted to access the wrong datacenter."
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return "", "API Key Missing", "Your request did not include an API key."
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch strings.ToLower(scheme) {
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", "API Key Invalid", invalid
		}
		_, key, _ := strings.Cut(string(raw), ":")
		if a, ok := s.apiKeys[key]; ok {
			return a, "", ""
		}
	case "bearer", "oauth":
		if t, ok := s.tokens[cred]; ok && !t.revoked {
			return t.account, "", ""
		}
	}
	return "", "API Key Invalid", invalid
}

// admit takes a connection slot for account, or says how to refuse; release
// must be called either way.
func (s *Service) admit(account string) (release func(), refusal int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arriving[account]++
	s.maxArrive[account] = max(s.maxArrive[account], s.arriving[account])
	leave := func() {
		s.mu.Lock()
		s.arriving[account]--
		s.mu.Unlock()
	}
	if s.limit > 0 && s.inFlight[account] >= s.limit {
		s.throttled[account]++
		n := float64(s.throttled[account])
		if s.forbidFrac > 0 && int(n*s.forbidFrac) > int((n-1)*s.forbidFrac) {
			return leave, http.StatusForbidden
		}
		return leave, http.StatusTooManyRequests
	}
	s.inFlight[account]++
	s.maxAdmit[account] = max(s.maxAdmit[account], s.inFlight[account])
	return func() {
		s.mu.Lock()
		s.inFlight[account]--
		s.arriving[account]--
		s.mu.Unlock()
	}, 0
}

// sleep waits d unless the client goes away first (then it reports false).
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Problem is Mailchimp's application/problem+json error body.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	httpjson.Encode(w, status, "application/problem+json", false,
		Problem{Type: problemType, Title: title, Status: status, Detail: detail, Instance: uuid()})
}

func badRequest(w http.ResponseWriter, detail string) {
	writeProblem(w, http.StatusBadRequest, "Invalid Resource", detail)
}

// writeJSON answers as Mailchimp does: charset named, <, > and & as they are.
func writeJSON(w http.ResponseWriter, status int, v any) {
	httpjson.Encode(w, status, "application/json; charset=utf-8", false, v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
