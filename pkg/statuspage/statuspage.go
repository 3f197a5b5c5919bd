// Package statuspage serves a source's setup and status: GET
// /v1/sources/{id}/status (JSON) and GET /sources/{id} (a server-rendered
// page). Both show what to paste into Mailchimp and Mandrill but never a
// secret: the audience webhook URL carries a placeholder for its secret, and
// every recorded text is scrubbed of the source's secrets before it is shown.
package statuspage

import (
	"context"

	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/secret"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
)

// What the page calls a source's state, as Heap's own Mailchimp source does.
const (
	WaitingForData  = "Waiting For Data"
	Connected       = "Connected"
	ReconnectNeeded = "Reconnect needed"
)

// SecretPlaceholder stands for the webhook secret in the audience URL.
const SecretPlaceholder = "<your webhook_secret>"

// Reporter reads a source's recorded status.
type Reporter interface {
	Report(ctx context.Context, source string) (status.Report, error)
}

// Config is what the handler needs.
type Config struct {
	Sources *source.Sources
	Status  Reporter
	// PublicURL is ingress's public base URL (PUBLIC_URL); empty: derived
	// from each request.
	PublicURL string
	// OAuth: "Connect Mailchimp" is configured (Env.OAuth).
	OAuth bool
	// Token, when set, is required as "Authorization: Bearer" or ?token=.
	Token string
	// Open serves the page without a token (the embedded development
	// stack); otherwise, without a Token, the page is off.
	Open bool
	Log  *zap.Logger
}

// Handler serves the two routes.
func Handler(cfg Config) http.Handler {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	h := &handler{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sources/{id}/status", h.json)
	mux.HandleFunc("GET /sources/{id}", h.page)
	return mux
}

type handler struct{ cfg Config }

// View is the JSON document and the page's data.
type View struct {
	Source       string            `json:"source"`
	Status       string            `json:"status"` // WaitingForData, Connected or ReconnectNeeded
	Reason       string            `json:"reason,omitempty"`
	FirstEventAt *time.Time        `json:"first_event_at,omitempty"`
	LastEventAt  *time.Time        `json:"last_event_at,omitempty"`
	Delivered    map[string]int64  `json:"delivered"`
	Total        int64             `json:"delivered_total"`
	Pending      int64             `json:"pending"`
	DeadLettered map[string]int64  `json:"dead_lettered"`
	MatchRate    *float64          `json:"match_rate,omitempty"`
	Skipped      []SkippedCampaign `json:"skipped_campaigns"`
	Webhooks     Webhooks          `json:"webhooks"`
	Email        EmailProperty     `json:"email_property"`
	ConnectURL   string            `json:"connect_url,omitempty"` // "Connect Mailchimp", when offered
	Polls        bool              `json:"polls_reports_api"`
}

// SkippedCampaign is a campaign the source does not poll.
type SkippedCampaign struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Webhooks are the URLs to paste; empty when that webhook is off.
type Webhooks struct {
	Mailchimp string `json:"mailchimp,omitempty"` // with SecretPlaceholder for the secret
	Mandrill  string `json:"mandrill,omitempty"`
}

// EmailProperty is the source's Heap join key.
type EmailProperty struct {
	Name       string `json:"name"`
	IsIdentity bool   `json:"is_identity"`
}

func (h *handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.Token == "" {
		if h.cfg.Open {
			return true
		}
		http.NotFound(w, r) // off: no token was set
		return false
	}
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	if secret.Equal(got, h.cfg.Token) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="mailchimp-heap status"`)
	http.Error(w, "unauthorized: send STATUS_TOKEN as Authorization: Bearer or ?token=", http.StatusUnauthorized)
	return false
}

// view builds the view of a source; ok is false for an unknown source.
func (h *handler) view(w http.ResponseWriter, r *http.Request) (View, bool) {
	// A token may travel in the query: keep it out of caches and referrers.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if !h.authorized(w, r) {
		return View{}, false
	}
	src, ok := h.cfg.Sources.Get(r.PathValue("id"))
	if !ok {
		http.Error(w, "unknown source", http.StatusNotFound)
		return View{}, false
	}
	rep, err := h.cfg.Status.Report(r.Context(), src.ID)
	if err != nil {
		h.cfg.Log.Warn("status report failed", zap.String("source", src.ID), zap.Error(err))
		http.Error(w, "status unavailable", http.StatusServiceUnavailable)
		return View{}, false
	}
	v := h.build(src, rep, h.baseURL(r))
	if tok := r.URL.Query().Get("token"); v.ConnectURL != "" && tok != "" {
		// A page opened with ?token= links to "Connect Mailchimp" with it:
		// a link cannot carry an Authorization header.
		v.ConnectURL += "?token=" + url.QueryEscape(tok)
	}
	return v, true
}

func (h *handler) build(src source.Source, rep status.Report, base string) View {
	scrub := scrubber(src, h.cfg.Token)
	v := View{
		Source:       src.ID,
		Status:       WaitingForData,
		FirstEventAt: rep.FirstEventAt,
		LastEventAt:  rep.LastEventAt,
		Delivered:    map[string]int64{},
		Total:        rep.DeliveredTotal(),
		Pending:      rep.Pending,
		DeadLettered: map[string]int64{},
		MatchRate:    rep.MatchRate,
		Skipped:      []SkippedCampaign{},
		Email:        EmailProperty{Name: src.EmailProperty, IsIdentity: src.JoinsOnIdentity()},
		Polls:        src.Polls(),
	}
	switch {
	case rep.State == status.StateReconnectNeeded:
		v.Status, v.Reason = ReconnectNeeded, scrub(rep.Reason)
	case v.Total > 0:
		v.Status = Connected
	}
	maps.Copy(v.Delivered, rep.Delivered)
	for k, n := range rep.DeadLettered {
		v.DeadLettered[scrub(k)] += n
	}
	for _, id := range slices.Sorted(maps.Keys(rep.Skipped)) {
		v.Skipped = append(v.Skipped, SkippedCampaign{ID: scrub(id), Reason: scrub(rep.Skipped[id])})
	}
	if src.WebhookSecret != "" {
		v.Webhooks.Mailchimp = base + "/webhooks/mailchimp/" + src.ID + "/" + SecretPlaceholder
	}
	if src.MandrillWebhookKey != "" {
		// Mandrill signs over the URL exactly as registered.
		v.Webhooks.Mandrill = src.MandrillWebhookURL
		if v.Webhooks.Mandrill == "" {
			v.Webhooks.Mandrill = base + "/webhooks/mandrill/" + src.ID
		}
		v.Webhooks.Mandrill = scrub(v.Webhooks.Mandrill)
	}
	if h.cfg.OAuth && src.MailchimpOAuth {
		v.ConnectURL = base + "/connect/mailchimp/" + src.ID
	}
	return v
}

// scrubber replaces the source's secrets (and the status token) in recorded
// texts: a reason may quote an upstream error, which may quote anything.
func scrubber(src source.Source, token string) func(string) string {
	var pairs []string
	for _, s := range []string{src.WebhookSecret, src.MandrillWebhookKey, src.MailchimpAPIKey, src.IdentityToken, token} {
		if s != "" {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	if len(pairs) == 0 {
		return func(s string) string { return s }
	}
	return strings.NewReplacer(pairs...).Replace
}

// baseURL is PUBLIC_URL. Only the embedded development stack falls back to
// the URL the request came to: elsewhere a Host header is the caller's to
// choose, and a page that echoed it would hand out an attacker's URL.
func (h *handler) baseURL(r *http.Request) string {
	if h.cfg.PublicURL != "" {
		return strings.TrimRight(h.cfg.PublicURL, "/")
	}
	if !h.cfg.Open {
		return "$PUBLIC_URL"
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (h *handler) json(w http.ResponseWriter, r *http.Request) {
	v, ok := h.view(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"sorted": func(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) },
	"time": func(t *time.Time) string {
		if t == nil {
			return "none yet"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"percent": func(f *float64) string {
		if f == nil {
			return "no events yet"
		}
		return fmt.Sprintf("%.1f%%", *f*100)
	},
	"stateClass": func(s string) string {
		switch s {
		case Connected:
			return "connected"
		case ReconnectNeeded:
			return "reconnect"
		}
		return "waiting"
	},
}).Parse(pageHTML))

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	v, ok := h.view(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := pageTmpl.Execute(w, v); err != nil {
		h.cfg.Log.Warn("status page render failed", zap.String("source", v.Source), zap.Error(err))
	}
}
