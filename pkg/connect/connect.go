// Package connect is the "Connect Mailchimp" OAuth 2 flow: it sends the user
// to Mailchimp's authorize page with a signed, expiring state, exchanges the
// returned code for a token, reads the account's data center from the
// metadata endpoint, and stores the token encrypted.
package connect

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
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

// Config is the OAuth client registered with Mailchimp.
type Config struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string // this service's /connect/mailchimp/callback, as registered
	LoginURL     string // default DefaultLoginURL (tests point it at the stand-in)
	StateKey     []byte // signs state
	StateTTL     time.Duration
	Sources      *config.Sources
	Tokens       TokenSaver
	States       StateSetter
	HTTP         *http.Client
	Log          *zap.Logger
	Now          func() time.Time
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
	c := &connector{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connect/mailchimp/callback", c.callback)
	mux.HandleFunc("GET /connect/mailchimp/{source}", c.start)
	return mux
}

type connector struct{ cfg Config }

func (c *connector) start(w http.ResponseWriter, r *http.Request) {
	src, ok := c.cfg.Sources.Get(r.PathValue("source"))
	if !ok {
		http.Error(w, "unknown source", http.StatusNotFound)
		return
	}
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {c.cfg.ClientID},
		"redirect_uri":  {c.cfg.RedirectURL},
		"state":         {c.state(src.ID)},
	}
	http.Redirect(w, r, strings.TrimRight(c.cfg.LoginURL, "/")+"/oauth2/authorize?"+q.Encode(), http.StatusFound)
}

// state is source|expiry|nonce, signed with HMAC-SHA256.
func (c *connector) state(source string) string {
	nonce := make([]byte, 12)
	rand.Read(nonce)
	payload := source + "|" + strconv.FormatInt(c.cfg.Now().Add(c.cfg.StateTTL).Unix(), 10) + "|" + base64.RawURLEncoding.EncodeToString(nonce)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(c.sign(payload))
}

func (c *connector) sign(payload string) []byte {
	mac := hmac.New(sha256.New, c.cfg.StateKey)
	mac.Write([]byte(payload))
	return mac.Sum(nil)
}

// ErrState marks a forged, malformed or expired state.
var ErrState = errors.New("invalid or expired state")

func (c *connector) verify(state string) (string, error) {
	p, sig, ok := strings.Cut(state, ".")
	if !ok {
		return "", ErrState
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, c.sign(string(payload))) {
		return "", ErrState
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 3 {
		return "", ErrState
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || c.cfg.Now().Unix() > exp {
		return "", ErrState
	}
	return parts[0], nil
}

var page = template.Must(template.New("p").Parse(`<!doctype html><title>Mailchimp connection</title>
<h1>{{.Title}}</h1><p>{{.Detail}}</p>`))

func (c *connector) answer(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	page.Execute(w, map[string]string{"Title": title, "Detail": detail})
}

func (c *connector) callback(w http.ResponseWriter, r *http.Request) {
	source, err := c.verify(r.URL.Query().Get("state"))
	if err != nil {
		c.cfg.Log.Warn("oauth callback refused", zap.Error(err))
		c.answer(w, http.StatusBadRequest, "Connection refused", "The link is invalid or expired: start again from Connect Mailchimp.")
		return
	}
	if _, ok := c.cfg.Sources.Get(source); !ok {
		c.answer(w, http.StatusNotFound, "Unknown source", source)
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		c.answer(w, http.StatusBadRequest, "Mailchimp did not authorize the connection", e)
		return
	}
	tok, err := c.exchange(r.Context(), r.URL.Query().Get("code"))
	if err == nil {
		tok, err = c.metadata(r.Context(), tok)
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
		c.cfg.States.SetState(r.Context(), source, "connected", "")
	}
	c.cfg.Log.Info("mailchimp connected", zap.String("source", source), zap.String("dc", tok.DC))
	c.answer(w, http.StatusOK, "Mailchimp connected", "Source "+source+" polls the account in data center "+tok.DC+".")
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
