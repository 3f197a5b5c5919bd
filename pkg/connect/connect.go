// Package connect is the "Connect Mailchimp" OAuth 2 flow: an operator
// (holding STATUS_TOKEN) starts it, it sends the browser to Mailchimp's
// authorize page with a signed, expiring state bound to that browser by a
// cookie, exchanges the returned code for a token, reads the account's data
// centre from the metadata endpoint, and stores the token encrypted.
//
// A state is good once, from the browser that started the flow, before it
// expires: its MAC covers the source, the expiry and a MAC of the nonce in
// the browser's cookie, and the callback records it as used (Once) before
// it spends the code. A token is stored only when its api_endpoint is
// Mailchimp's (tokens.Token.Check), unless the source overrides the API
// URL (mailchimp_api_url). Answers to the browser are generic; the reason
// goes to the log, never the token, the code or the operator token.
package connect

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

// DefaultLoginURL is Mailchimp's OAuth host.
const DefaultLoginURL = "https://login.mailchimp.com"

// TokenSaver stores a source's token.
type TokenSaver interface {
	Save(ctx context.Context, source string, t tokens.Token) error
}

// StateSetter clears a source's "reconnect needed" once it is connected again.
type StateSetter interface {
	SetState(ctx context.Context, source, state, reason string) error
}

// Once records single-use keys: first is true only for the first call with
// a key within ttl (status.Store does it in Redis, shared by instances).
type Once interface {
	Once(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// Config is the OAuth client registered with Mailchimp.
type Config struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string // this service's /connect/mailchimp/callback, as registered
	LoginURL     string // default DefaultLoginURL (tests point it at the stand-in)
	StateKey     []byte // signs state and binds it to the browser's cookie
	StateTTL     time.Duration
	// OperatorToken (STATUS_TOKEN) is required to start a connection, as
	// Authorization: Bearer or ?token=. Empty, starting is refused unless
	// AllowUnauthenticated (the embedded development stack).
	OperatorToken        string
	AllowUnauthenticated bool
	Sources              *source.Sources
	Tokens               TokenSaver
	States               StateSetter
	Once                 Once // records used states; nil refuses every callback
	HTTP                 *http.Client
	Log                  *zap.Logger
	Now                  func() time.Time
}

// Handler serves GET /connect/mailchimp/{source} and GET /connect/mailchimp/callback.
func Handler(cfg Config) http.Handler {
	if cfg.LoginURL == "" {
		cfg.LoginURL = DefaultLoginURL
	}
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = 10 * time.Minute
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Once == nil {
		cfg.Log.Error("connect: no store for used states (Config.Once): every callback is refused")
	}
	c := &connector{cfg: cfg, secure: strings.HasPrefix(strings.ToLower(cfg.RedirectURL), "https://")}
	if cfg.OperatorToken != "" {
		sum := sha256.Sum256([]byte(cfg.OperatorToken))
		c.operator = sum[:]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connect/mailchimp/callback", c.callback)
	mux.HandleFunc("GET /connect/mailchimp/{source}", c.start)
	return mux
}

type connector struct {
	cfg      Config
	operator []byte // SHA-256 of OperatorToken; nil when none
	secure   bool   // RedirectURL is https: the cookie is Secure and __Host-
}

// authorized reports whether r carries the operator token, answering the
// refusal itself. Digests are compared, so the time taken reveals neither
// the token nor its length.
func (c *connector) authorized(w http.ResponseWriter, r *http.Request) bool {
	if c.operator == nil {
		if c.cfg.AllowUnauthenticated {
			return true
		}
		http.Error(w, "set STATUS_TOKEN to connect sources", http.StatusForbidden)
		return false
	}
	got := r.URL.Query().Get("token")
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(tok)
	}
	sum := sha256.Sum256([]byte(got))
	if got != "" && subtle.ConstantTimeCompare(sum[:], c.operator) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="mailchimp-heap connect"`)
	http.Error(w, "unauthorized: send STATUS_TOKEN as Authorization: Bearer or ?token=", http.StatusUnauthorized)
	return false
}

func (c *connector) start(w http.ResponseWriter, r *http.Request) {
	// The operator token may travel in the query: keep it out of caches
	// and out of the Referer sent to Mailchimp.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if !c.authorized(w, r) {
		c.cfg.Log.Warn("connect start refused: no valid operator token", zap.String("remote", r.RemoteAddr))
		return
	}
	src, ok := c.cfg.Sources.Get(r.PathValue("source"))
	if !ok {
		http.Error(w, "unknown source", http.StatusNotFound)
		return
	}
	nonce := make([]byte, 32)
	rand.Read(nonce) // never fails (crypto/rand)
	http.SetCookie(w, &http.Cookie{
		Name: c.cookieName(src.ID), Value: base64.RawURLEncoding.EncodeToString(nonce), Path: "/",
		MaxAge: int(c.cfg.StateTTL / time.Second), HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode,
	})
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {c.cfg.ClientID},
		"redirect_uri":  {c.cfg.RedirectURL},
		"state":         {c.state(src.ID, nonce)},
	}
	http.Redirect(w, r, strings.TrimRight(c.cfg.LoginURL, "/")+"/oauth2/authorize?"+q.Encode(), http.StatusFound)
}

// cookieName is per source, so connecting two sources from one browser at
// once works; __Host- (Secure, Path=/, no Domain) when served over https.
func (c *connector) cookieName(source string) string {
	if c.secure {
		return "__Host-mh_connect_" + source
	}
	return "mh_connect_" + source
}

// Labels keep the two MACs made with StateKey apart.
const (
	labelState   = "connect-state\x00"
	labelBrowser = "connect-browser\x00"
)

func (c *connector) mac(label, msg string) []byte {
	m := hmac.New(sha256.New, c.cfg.StateKey)
	m.Write([]byte(label + msg))
	return m.Sum(nil)
}

// binding ties a state to the browser holding nonce in its cookie.
func (c *connector) binding(nonce []byte) string {
	return base64.RawURLEncoding.EncodeToString(c.mac(labelBrowser, string(nonce)))
}

// state is source|expiry|binding, signed with HMAC-SHA256.
func (c *connector) state(source string, nonce []byte) string {
	payload := source + "|" + strconv.FormatInt(c.cfg.Now().Add(c.cfg.StateTTL).Unix(), 10) + "|" + c.binding(nonce)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(c.mac(labelState, payload))
}

// Why a callback is refused; logged, never shown.
var (
	// ErrState marks a forged, malformed or expired state.
	ErrState = errors.New("invalid or expired state")
	// ErrBrowser marks a state brought by a browser that did not start the flow.
	ErrBrowser = errors.New("state not bound to this browser (cookie missing or different)")
	// ErrReplay marks a state used before.
	ErrReplay = errors.New("state already used")
)

// stateClaims are what a verified state says.
type stateClaims struct {
	source  string
	expires time.Time
	binding string
}

func (c *connector) verify(state string) (stateClaims, error) {
	p, sig, ok := strings.Cut(state, ".")
	if !ok {
		return stateClaims{}, ErrState
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, c.mac(labelState, string(payload))) {
		return stateClaims{}, ErrState
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 3 || parts[2] == "" {
		return stateClaims{}, ErrState
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || c.cfg.Now().Unix() > exp {
		return stateClaims{}, ErrState
	}
	return stateClaims{source: parts[0], expires: time.Unix(exp, 0), binding: parts[2]}, nil
}

// bound checks that r's browser holds the nonce the state was made for.
func (c *connector) bound(r *http.Request, st stateClaims) error {
	ck, err := r.Cookie(c.cookieName(st.source))
	if err != nil {
		return ErrBrowser
	}
	nonce, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.binding(nonce)), []byte(st.binding)) != 1 {
		return ErrBrowser
	}
	return nil
}

// spend records the state as used until it expires (and a minute more, for
// clocks that disagree between instances); ErrReplay when it was already.
func (c *connector) spend(ctx context.Context, st stateClaims) error {
	if c.cfg.Once == nil {
		return errors.New("no store for used states")
	}
	ttl := max(st.expires.Sub(c.cfg.Now()), 0) + time.Minute
	first, err := c.cfg.Once.Once(ctx, "connect:"+st.binding, ttl)
	if err != nil {
		return fmt.Errorf("record used state: %w", err)
	}
	if !first {
		return ErrReplay
	}
	return nil
}

var page = template.Must(template.New("p").Parse(`<!doctype html><title>Mailchimp connection</title>
<h1>{{.Title}}</h1><p>{{.Detail}}</p>`))

func (c *connector) answer(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	page.Execute(w, map[string]string{"Title": title, "Detail": detail})
}

const startAgain = "The link is invalid, expired or was opened in another browser: start again from Connect Mailchimp."

func (c *connector) callback(w http.ResponseWriter, r *http.Request) {
	// The code travels in the query.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	st, err := c.verify(r.URL.Query().Get("state"))
	if err == nil {
		err = c.bound(r, st)
	}
	if err != nil {
		c.cfg.Log.Warn("oauth callback refused", zap.String("remote", r.RemoteAddr), zap.Error(err))
		c.answer(w, http.StatusBadRequest, "Connection refused", startAgain)
		return
	}
	source := st.source
	// The cookie has done its work, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(source), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode})
	if err := c.spend(r.Context(), st); err != nil {
		c.cfg.Log.Warn("oauth callback refused", zap.String("source", source), zap.Error(err))
		if errors.Is(err, ErrReplay) {
			c.answer(w, http.StatusBadRequest, "Connection refused", startAgain)
		} else {
			c.answer(w, http.StatusServiceUnavailable, "Connection failed", "Try again in a moment.")
		}
		return
	}
	src, ok := c.cfg.Sources.Get(source)
	if !ok {
		c.cfg.Log.Warn("oauth callback refused: source no longer configured", zap.String("source", source))
		c.answer(w, http.StatusNotFound, "Unknown source", "The source is no longer configured.")
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		c.cfg.Log.Info("mailchimp did not authorize the connection", zap.String("source", source), zap.String("error", truncate(e, 100)))
		c.answer(w, http.StatusBadRequest, "Mailchimp did not authorize the connection", "Start again from Connect Mailchimp.")
		return
	}
	tok, err := c.exchange(r.Context(), r.URL.Query().Get("code"))
	if err == nil {
		tok, err = c.metadata(r.Context(), tok)
	}
	if err == nil && src.MailchimpAPIURL == "" {
		// Without an explicit API URL the poller sends the token to the
		// api_endpoint: only Mailchimp's are stored.
		err = tok.Check()
	}
	if err == nil {
		err = c.cfg.Tokens.Save(r.Context(), source, tok)
	}
	if err != nil {
		c.cfg.Log.Warn("oauth connection failed", zap.String("source", source), zap.Error(err))
		c.answer(w, http.StatusBadGateway, "Connection failed", "Mailchimp's answer could not be used; try again.")
		return
	}
	if c.cfg.States != nil {
		if err := c.cfg.States.SetState(r.Context(), source, "connected", ""); err != nil {
			c.cfg.Log.Warn("connect: record source state", zap.String("source", source), zap.Error(err))
		}
	}
	c.cfg.Log.Info("mailchimp connected", zap.String("source", source), zap.String("dc", tok.DC))
	c.answer(w, http.StatusOK, "Mailchimp connected", "Source "+source+" polls the account in data center "+tok.DC+".")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (c *connector) exchange(ctx context.Context, code string) (tokens.Token, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"redirect_uri":  {c.cfg.RedirectURL},
		"code":          {code},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.LoginURL, "/")+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokens.Token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := c.do(req, &out); err != nil {
		return tokens.Token{}, fmt.Errorf("oauth token: %w", err)
	}
	if out.AccessToken == "" {
		return tokens.Token{}, fmt.Errorf("oauth token: no access token (%s)", out.Error)
	}
	return tokens.Token{AccessToken: out.AccessToken, ConnectedAt: c.cfg.Now().UTC()}, nil
}

func (c *connector) metadata(ctx context.Context, tok tokens.Token) (tokens.Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.cfg.LoginURL, "/")+"/oauth2/metadata", nil)
	if err != nil {
		return tok, err
	}
	req.Header.Set("Authorization", "OAuth "+tok.AccessToken)
	var out struct {
		DC          string `json:"dc"`
		APIEndpoint string `json:"api_endpoint"`
		Error       string `json:"error"`
	}
	if err := c.do(req, &out); err != nil {
		return tok, fmt.Errorf("oauth metadata: %w", err)
	}
	if out.Error != "" || out.DC == "" {
		return tok, fmt.Errorf("oauth metadata: token refused (%s)", out.Error)
	}
	tok.DC, tok.APIEndpoint = out.DC, out.APIEndpoint
	return tok, nil
}

func (c *connector) do(req *http.Request, out any) error {
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("HTTP %d: malformed answer", resp.StatusCode)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
