package statuspage_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/statuspage"
)

const (
	webhookSecret = "wh-secret-0123456789abcdef"
	mandrillKey   = "mandrill-key-abcdef0123"
	apiKey        = "0123456789abcdef0123456789abcdef-us6"
	identityToken = "identity-token-fedcba9876543210"
	statusToken   = "status-token-5555"
)

var secrets = []string{webhookSecret, mandrillKey, apiKey, identityToken, statusToken}

type reports map[string]status.Report

func (r reports) Report(_ context.Context, source string) (status.Report, error) {
	if source == "broken" {
		return status.Report{}, errors.New("redis down")
	}
	return r[source], nil
}

func testSources(t *testing.T) *source.Sources {
	t.Helper()
	ss, err := source.New(
		source.Source{ID: "acme", HeapAppID: "1", WebhookSecret: webhookSecret,
			MandrillWebhookURL: "https://hooks.example.com/webhooks/mandrill/acme", MandrillWebhookKey: mandrillKey,
			MailchimpAPIKey: apiKey, IdentityToken: identityToken},
		source.Source{ID: "oauth", HeapAppID: "2", MailchimpOAuth: true, EmailProperty: "work_email"},
		source.Source{ID: "broken", HeapAppID: "3"},
		source.Source{ID: "fresh", HeapAppID: "4"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func ptr[T any](v T) *T { return &v }

func TestHandler(t *testing.T) {
	t0 := time.Date(2026, 10, 2, 14, 21, 9, 0, time.UTC)
	hostile := `<script>alert("x")</script>`
	reps := reports{
		"acme": {
			FirstEventAt: &t0, LastEventAt: &t0,
			Delivered:    map[string]int64{"Open Email": 3, "Bounce Email": 1},
			Pending:      1,
			DeadLettered: map[string]int64{"unmatched": 0, "heap_rejected": 2},
			MatchRate:    ptr(0.8),
			Skipped:      map[string]string{"c9": hostile + " variate; key " + apiKey},
		},
		"oauth": {State: status.StateReconnectNeeded, Reason: "invalid_token " + hostile,
			Delivered: map[string]int64{"Open Email": 5}},
	}
	tests := []struct {
		name     string
		method   string // default GET
		path     string
		token    string // STATUS_TOKEN
		auth     string // Authorization header
		oauth    bool
		wantCode int
		wantJSON *statuspage.View
		contains []string
		excludes []string
	}{
		{
			name: "json of a connected source", path: "/v1/sources/acme/status", wantCode: 200,
			wantJSON: &statuspage.View{
				Source: "acme", Status: statuspage.Connected, FirstEventAt: &t0, LastEventAt: &t0,
				Delivered: map[string]int64{"Open Email": 3, "Bounce Email": 1}, Total: 4, Pending: 1,
				DeadLettered: map[string]int64{"unmatched": 0, "heap_rejected": 2}, MatchRate: ptr(0.8),
				Skipped: []statuspage.SkippedCampaign{{ID: "c9", Reason: hostile + " variate; key [redacted]"}},
				Webhooks: statuspage.Webhooks{
					Mailchimp: "http://status.test/webhooks/mailchimp/acme/<your webhook_secret>",
					Mandrill:  "https://hooks.example.com/webhooks/mandrill/acme",
				},
				Email: statuspage.EmailProperty{Name: "identity", IsIdentity: true}, Polls: true,
			},
		},
		{
			name: "json waiting for data, nothing recorded", path: "/v1/sources/fresh/status", wantCode: 200,
			wantJSON: &statuspage.View{
				Source: "fresh", Status: statuspage.WaitingForData, Delivered: map[string]int64{},
				DeadLettered: map[string]int64{}, Skipped: []statuspage.SkippedCampaign{},
				Email: statuspage.EmailProperty{Name: "identity", IsIdentity: true},
			},
		},
		{
			name: "json reconnect needed wins over deliveries, connect offered", path: "/v1/sources/oauth/status",
			oauth: true, wantCode: 200,
			wantJSON: &statuspage.View{
				Source: "oauth", Status: statuspage.ReconnectNeeded, Reason: "invalid_token " + hostile,
				Delivered: map[string]int64{"Open Email": 5}, Total: 5, DeadLettered: map[string]int64{},
				Skipped: []statuspage.SkippedCampaign{}, ConnectURL: "http://status.test/connect/mailchimp/oauth",
				Email: statuspage.EmailProperty{Name: "work_email"}, Polls: true,
			},
		},
		{
			name: "page of a connected source: counts, escaped texts, placeholder, no secret", path: "/sources/acme",
			wantCode: 200,
			contains: []string{`id="state" class="state connected">Connected<`, "Open Email", "Bounce Email",
				`id="delivered-total" class="n">4<`, "80.0%", "heap_rejected", "2026-10-02 14:21:09 UTC",
				"http://status.test/webhooks/mailchimp/acme/&lt;your webhook_secret&gt;",
				"https://hooks.example.com/webhooks/mandrill/acme",
				"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; variate; key [redacted]",
				"<code>identity</code>"},
			excludes: []string{hostile, "Connect Mailchimp", "Waiting For Data"},
		},
		{
			name: "page waiting for data", path: "/sources/fresh", wantCode: 200,
			contains: []string{`class="state waiting">Waiting For Data<`, "none yet", "no events yet",
				"Off: set <code>mandrill_webhook_key</code>"},
			excludes: []string{"Connected<"},
		},
		{name: "status store down", path: "/sources/broken", wantCode: 503},
		{
			name: "page reconnect needed with the connect button", path: "/sources/oauth", oauth: true, wantCode: 200,
			contains: []string{">Reconnect needed<", `href="http://status.test/connect/mailchimp/oauth"`, "Connect Mailchimp",
				"invalid_token &lt;script&gt;", "<code>work_email</code>", "Off: set <code>webhook_secret</code>"},
			excludes: []string{hostile},
		},
		{
			name: "no connect button without OAuth configured", path: "/sources/oauth", wantCode: 200,
			excludes: []string{"Connect Mailchimp"},
		},
		{name: "unknown source page", path: "/sources/nope", wantCode: 404},
		{name: "unknown source json", path: "/v1/sources/nope/status", wantCode: 404},
		{name: "token required", path: "/sources/acme", token: statusToken, wantCode: 401},
		{name: "wrong token", path: "/sources/acme?token=nope", token: statusToken, wantCode: 401},
		{name: "wrong bearer", path: "/v1/sources/acme/status", token: statusToken, auth: "Bearer nope", wantCode: 401},
		{
			name: "token in the query, not echoed", path: "/sources/acme?token=" + statusToken, token: statusToken,
			wantCode: 200, contains: []string{">Connected<"},
		},
		{
			name: "bearer token", path: "/v1/sources/acme/status", token: statusToken, auth: "Bearer " + statusToken,
			wantCode: 200, contains: []string{`"status": "Connected"`},
		},
		{name: "other methods", method: http.MethodPost, path: "/sources/acme", wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := statuspage.Handler(statuspage.Config{Sources: testSources(t), Status: reps, OAuth: tt.oauth, Token: tt.token, Open: tt.token == ""})
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, "http://status.test"+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantCode, body)
			}
			for _, s := range secrets {
				if strings.Contains(string(body), s) {
					t.Errorf("response holds the secret %q", s)
				}
			}
			if tt.wantJSON != nil {
				var got statuspage.View
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				if diff := cmp.Diff(*tt.wantJSON, got); diff != "" {
					t.Errorf("json (-want +got):\n%s", diff)
				}
			}
			for _, s := range tt.contains {
				if !strings.Contains(string(body), s) {
					t.Errorf("response lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tt.excludes {
				if strings.Contains(string(body), s) {
					t.Errorf("response holds %q", s)
				}
			}
		})
	}
}

func TestHandlerPublicURL(t *testing.T) {
	h := statuspage.Handler(statuspage.Config{Sources: testSources(t), Status: reports{},
		PublicURL: "https://hooks.example.org/", Token: "operator-token-0123"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://internal:8080/v1/sources/acme/status?token=operator-token-0123", nil))
	var v statuspage.View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if want := "https://hooks.example.org/webhooks/mailchimp/acme/<your webhook_secret>"; v.Webhooks.Mailchimp != want {
		t.Errorf("mailchimp webhook %q, want %q", v.Webhooks.Mailchimp, want)
	}
	if v.Status != statuspage.WaitingForData || v.MatchRate != nil {
		t.Errorf("status %q, match rate %v", v.Status, v.MatchRate)
	}
}

// TestHandlerSafeDefaults: outside the embedded stack the page needs its
// token (without one it is off), and webhook URLs never come from the
// request's Host header.
func TestHandlerSafeDefaults(t *testing.T) {
	off := statuspage.Handler(statuspage.Config{Sources: testSources(t), Status: reports{}})
	rec := httptest.NewRecorder()
	off.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://evil.example/v1/sources/acme/status", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("no STATUS_TOKEN, not the embedded stack: %d, want 404", rec.Code)
	}
	on := statuspage.Handler(statuspage.Config{Sources: testSources(t), Status: reports{}, Token: "operator-token-0123"})
	rec = httptest.NewRecorder()
	on.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://evil.example/v1/sources/acme/status", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d, want 401", rec.Code)
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://evil.example/v1/sources/acme/status", nil)
	req.Header.Set("Authorization", "Bearer operator-token-0123")
	on.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "evil.example") {
		t.Fatalf("with the token: %d %s", rec.Code, rec.Body.String())
	}
}
