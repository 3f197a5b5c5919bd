package source

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// withDefaults is what a source holding only id and heap_app_id becomes.
func withDefaults(id, app string) Source {
	return Source{
		ID:                      id,
		HeapAppID:               app,
		HeapRegion:              "us",
		EmailProperty:           JoinIdentity,
		EmailCase:               "lower",
		Events:                  []string{EventOpen, EventClick, EventBounce},
		AppEventsPerMinute:      HeapAppEventsPerMinute,
		IdentityEventsPerMinute: HeapIdentityEventsPerMinute,
		PollInterval:            5 * time.Minute,
		ActivityWindow:          30 * 24 * time.Hour,
		PendingMaxAge:           DefaultPendingMaxAge,
	}
}

func TestParse(t *testing.T) {
	full := Source{
		ID:                      "shop_eu-2",
		HeapAppID:               "987654",
		HeapRegion:              "eu",
		EmailProperty:           "email",
		EmailCase:               "preserve",
		WebhookSecret:           "0123456789abcdef",
		MandrillWebhookURL:      "https://hooks.example.com/webhooks/mandrill/shop",
		MandrillWebhookKey:      "Yq3mZ8sD1fL0kV7pB2nX6c",
		Events:                  []string{EventOpen, EventSent},
		AppEventsPerMinute:      5000,
		IdentityEventsPerMinute: 10,
		PollInterval:            5 * time.Minute,
		ActivityWindow:          30 * 24 * time.Hour,
		PendingMaxAge:           DefaultPendingMaxAge,
	}
	tests := []struct {
		name string
		in   string
		want []Source
	}{
		{
			name: "yaml minimal gets defaults",
			in:   "sources:\n  - id: acme\n    heap_app_id: \"12345\"\n",
			want: []Source{withDefaults("acme", "12345")},
		},
		{
			name: "json minimal gets defaults",
			in:   `{"sources": [{"id": "acme", "heap_app_id": "12345"}]}`,
			want: []Source{withDefaults("acme", "12345")},
		},
		{
			name: "empty events list gets defaults",
			in:   "sources:\n  - id: acme\n    heap_app_id: app\n    events: []\n",
			want: []Source{withDefaults("acme", "app")},
		},
		{
			name: "yaml every field",
			in: `sources:
  - id: shop_eu-2
    heap_app_id: "987654"
    heap_region: eu
    email_property: email
    email_case: preserve
    webhook_secret: 0123456789abcdef
    mandrill_webhook_url: https://hooks.example.com/webhooks/mandrill/shop
    mandrill_webhook_key: Yq3mZ8sD1fL0kV7pB2nX6c
    events: [open, sent]
    app_events_per_minute: 5000
    identity_events_per_minute: 10
`,
			want: []Source{full},
		},
		{
			name: "json every field",
			in: `{"sources": [{
  "id": "shop_eu-2", "heap_app_id": "987654", "heap_region": "eu",
  "email_property": "email", "email_case": "preserve",
  "webhook_secret": "0123456789abcdef",
  "mandrill_webhook_url": "https://hooks.example.com/webhooks/mandrill/shop",
  "mandrill_webhook_key": "Yq3mZ8sD1fL0kV7pB2nX6c",
  "events": ["open", "sent"],
  "app_events_per_minute": 5000, "identity_events_per_minute": 10}]}`,
			want: []Source{full},
		},
		{
			name: "several sources keep file order",
			in: `sources:
  - {id: zeta, heap_app_id: "1"}
  - {id: alpha, heap_app_id: "2", heap_region: eu}
`,
			want: []Source{
				withDefaults("zeta", "1"),
				func() Source { s := withDefaults("alpha", "2"); s.HeapRegion = "eu"; return s }(),
			},
		},
		{
			name: "64 character id",
			in:   "sources:\n  - id: " + strings.Repeat("a", 64) + "\n    heap_app_id: x\n",
			want: []Source{withDefaults(strings.Repeat("a", 64), "x")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, ss.All()); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
			for _, w := range tt.want {
				got, ok := ss.Get(w.ID)
				if !ok {
					t.Fatalf("Get(%q) not found", w.ID)
				}
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("Get(%q) mismatch (-want +got):\n%s", w.ID, diff)
				}
			}
			if _, ok := ss.Get("missing"); ok {
				t.Errorf("Get(missing) found a source")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr []string // substrings, all required
	}{
		{name: "empty file", in: "", wantErr: []string{"no sources"}},
		{name: "empty list", in: "sources: []\n", wantErr: []string{"no sources"}},
		{name: "empty json list", in: `{"sources": []}`, wantErr: []string{"no sources"}},
		{name: "missing id", in: "sources:\n  - heap_app_id: x\n", wantErr: []string{`id ""`}},
		{name: "id with a space", in: "sources:\n  - id: \"ac me\"\n    heap_app_id: x\n", wantErr: []string{`id "ac me" must be 1-64`}},
		{name: "id with a slash", in: "sources:\n  - id: a/b\n    heap_app_id: x\n", wantErr: []string{`id "a/b" must be 1-64`}},
		{name: "id too long", in: "sources:\n  - id: " + strings.Repeat("a", 65) + "\n    heap_app_id: x\n", wantErr: []string{"must be 1-64"}},
		{name: "missing heap_app_id", in: "sources:\n  - id: acme\n", wantErr: []string{`source "acme"`, "heap_app_id is required"}},
		{name: "bad region", in: "sources:\n  - {id: acme, heap_app_id: x, heap_region: ap}\n", wantErr: []string{`heap_region "ap" must be us or eu`}},
		{name: "region is case-sensitive", in: "sources:\n  - {id: acme, heap_app_id: x, heap_region: EU}\n", wantErr: []string{`heap_region "EU"`}},
		{name: "bad email_case", in: "sources:\n  - {id: acme, heap_app_id: x, email_case: upper}\n", wantErr: []string{`email_case "upper" must be lower or preserve`}},
		{name: "short webhook_secret", in: "sources:\n  - {id: acme, heap_app_id: x, webhook_secret: 0123456789abcde}\n", wantErr: []string{"webhook_secret must be at least 16 characters"}},
		{
			name:    "mandrill url without key",
			in:      "sources:\n  - {id: acme, heap_app_id: x, mandrill_webhook_url: \"https://hooks.example.com/m\"}\n",
			wantErr: []string{"mandrill_webhook_url and mandrill_webhook_key go together"},
		},
		{
			name:    "mandrill key without url",
			in:      "sources:\n  - {id: acme, heap_app_id: x, mandrill_webhook_key: k}\n",
			wantErr: []string{"mandrill_webhook_url and mandrill_webhook_key go together"},
		},
		{name: "unknown event", in: "sources:\n  - {id: acme, heap_app_id: x, events: [open, delivered]}\n", wantErr: []string{`events: unknown "delivered"`}},
		{name: "event names are case-sensitive", in: "sources:\n  - {id: acme, heap_app_id: x, events: [Open]}\n", wantErr: []string{`events: unknown "Open"`}},
		{name: "app rate over Heap's limit", in: "sources:\n  - {id: acme, heap_app_id: x, app_events_per_minute: 15001}\n", wantErr: []string{"app_events_per_minute 15001"}},
		{name: "negative app rate", in: "sources:\n  - {id: acme, heap_app_id: x, app_events_per_minute: -1}\n", wantErr: []string{"app_events_per_minute -1"}},
		{name: "identity rate over Heap's limit", in: "sources:\n  - {id: acme, heap_app_id: x, identity_events_per_minute: 1001}\n", wantErr: []string{"identity_events_per_minute 1001"}},
		{name: "api key without dc", in: "sources:\n  - {id: acme, heap_app_id: x, mailchimp_api_key: 0123456789abcdef}\n", wantErr: []string{"mailchimp_api_key must look like <key>-<dc>"}},
		{name: "api key with empty dc", in: "sources:\n  - {id: acme, heap_app_id: x, mailchimp_api_key: 0123456789abcdef-}\n", wantErr: []string{"mailchimp_api_key must look like <key>-<dc>"}},
		{name: "api key dc is a host", in: "sources:\n  - {id: acme, heap_app_id: x, mailchimp_api_key: \"0123456789abcdef-evil.example/\"}\n", wantErr: []string{"mailchimp_api_key must look like <key>-<dc>"}},
		{name: "api key dc with a fragment", in: "sources:\n  - {id: acme, heap_app_id: x, mailchimp_api_key: \"0123456789abcdef-evil.example#\"}\n", wantErr: []string{"mailchimp_api_key must look like <key>-<dc>"}},
		{name: "api key dc upper case", in: "sources:\n  - {id: acme, heap_app_id: x, mailchimp_api_key: 0123456789abcdef-US21}\n", wantErr: []string{"mailchimp_api_key must look like <key>-<dc>"}},
		{
			name:    "duplicate id",
			in:      "sources:\n  - {id: acme, heap_app_id: x}\n  - {id: acme, heap_app_id: y}\n",
			wantErr: []string{`source "acme": duplicate id`},
		},
		{name: "unknown yaml field", in: "sources:\n  - id: acme\n    heap_app_id: x\n    heap_region_: eu\n", wantErr: []string{`unknown field "heap_region_"`}},
		{name: "unknown json field", in: `{"sources": [{"id": "acme", "heap_app_id": "x", "events_": ["open"]}]}`, wantErr: []string{`unknown field "events_"`}},
		{name: "unknown top-level field", in: "source:\n  - {id: acme, heap_app_id: x}\n", wantErr: []string{`unknown field "source"`}},
		{name: "not yaml", in: "sources: [\n", wantErr: []string{"sources file"}},
		{name: "wrong type", in: "sources:\n  - {id: acme, heap_app_id: x, events: open}\n", wantErr: []string{"sources file"}},
		{
			name: "every problem of every source is reported",
			in: `sources:
  - {id: "bad id", heap_region: mars}
  - {id: ok, heap_app_id: x, email_case: title, events: [view]}
`,
			wantErr: []string{
				`id "bad id"`, "heap_app_id is required", `heap_region "mars"`,
				`source "ok"`, `email_case "title"`, `events: unknown "view"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse() = %+v, want error", ss.All())
			}
			if ss != nil {
				t.Errorf("Parse() returned sources with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q lacks the config: prefix", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewDoesNotAlias(t *testing.T) {
	ss, err := New(Source{ID: "acme", HeapAppID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	all := ss.All()
	all[0].ID = "changed"
	if got := ss.All()[0].ID; got != "acme" {
		t.Errorf("All() exposes the internal list: ID = %q after edit", got)
	}
}

func TestSourceHelpers(t *testing.T) {
	ss, err := New(
		Source{ID: "def", HeapAppID: "x"},
		Source{ID: "custom", HeapAppID: "x", EmailProperty: "email", EmailCase: "preserve", Events: []string{EventSent}},
	)
	if err != nil {
		t.Fatal(err)
	}
	def, _ := ss.Get("def")
	custom, _ := ss.Get("custom")
	tests := []struct {
		name      string
		got, want bool
	}{
		{"default wants open", def.Wants(EventOpen), true},
		{"default wants click", def.Wants(EventClick), true},
		{"default wants bounce", def.Wants(EventBounce), true},
		{"default does not want sent", def.Wants(EventSent), false},
		{"custom wants sent", custom.Wants(EventSent), true},
		{"custom does not want open", custom.Wants(EventOpen), false},
		{"default lowercases", def.LowercaseEmail(), true},
		{"preserve keeps case", custom.LowercaseEmail(), false},
		{"default joins on identity", def.JoinsOnIdentity(), true},
		{"custom property does not", custom.JoinsOnIdentity(), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestSourceHeapURL(t *testing.T) {
	tests := []struct {
		name     string
		region   string
		override string
		want     string
	}{
		{name: "us", region: "us", want: HeapUSURL},
		{name: "eu", region: "eu", want: HeapEUURL},
		{name: "unset region is us", region: "", want: HeapUSURL},
		{name: "override wins over us", region: "us", override: "http://127.0.0.1:7000", want: "http://127.0.0.1:7000"},
		{name: "override wins over eu", region: "eu", override: "http://sink:7000", want: "http://sink:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Source{ID: "acme", HeapAppID: "x", HeapRegion: tt.region}
			if got := s.HeapURL(tt.override); got != tt.want {
				t.Errorf("HeapURL(%q) = %q, want %q", tt.override, got, tt.want)
			}
		})
	}
	if HeapUSURL != "https://heapanalytics.com" || HeapEUURL != "https://c.eu.heap-api.com" {
		t.Errorf("Heap endpoints changed: %q, %q (docs/ARCHITECTURE.md §7)", HeapUSURL, HeapEUURL)
	}
}

// TestMailchimpDC: a data centre is letters then digits (us21), so
// https://<dc>.api.mailchimp.com is always one of Mailchimp's hosts.
func TestMailchimpDC(t *testing.T) {
	tests := []struct {
		dc   string
		want bool
	}{
		{"us1", true}, {"us6", true}, {"us21", true}, {"usx123", true}, {"us1234", false},
		{"", false}, {"us", false}, {"21", false}, {"US21", false}, {"us21 ", false},
		{"us21.evil", false}, {"evil.example", false}, {"us21/", false}, {"us21#", false},
		{"us21@evil.example", false}, {"u1", false}, {"abcde999", true}, {"abcdef1", false},
	}
	for _, tt := range tests {
		if got := IsMailchimpDC(tt.dc); got != tt.want {
			t.Errorf("IsMailchimpDC(%q) = %v, want %v", tt.dc, got, tt.want)
		}
	}
}

// TestAPIKeyDC: a key whose dc is Mailchimp's is accepted, and a refusal
// never quotes the key.
func TestAPIKeyDC(t *testing.T) {
	tests := []struct {
		key     string
		wantErr bool
	}{
		{"0123456789abcdef0123456789abcdef-us21", false},
		{"0123456789abcdef0123456789abcdef-us6", false},
		{"0123456789abcdef0123456789abcdef-evil.example", true},
		{"0123456789abcdef0123456789abcdef-us21.api.mailchimp.com.evil.example", true},
		{"-us21", true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := New(Source{ID: "acme", HeapAppID: "x", MailchimpAPIKey: tt.key})
			if (err != nil) != tt.wantErr {
				t.Fatalf("New() error = %v, wantErr %v", err, tt.wantErr)
			}
			if secret, _, _ := strings.Cut(tt.key, "-"); err != nil && secret != "" && strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}
