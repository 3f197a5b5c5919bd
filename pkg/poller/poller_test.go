package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/poller"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

var now = time.Date(2026, 10, 10, 12, 0, 0, 0, time.UTC)

type harness struct {
	brokers []string
	topics  kafka.Topics
	mc      *mailchimptest.Server
	status  *status.Store
	rdb     redis.UniversalClient
	src     source.Source
	prefix  string
	t       *testing.T
}

func newHarness(t *testing.T, opts ...mailchimptest.Option) *harness {
	brokers := kafkatest.Brokers(t)
	h := &harness{brokers: brokers, topics: kafkatest.Topics(t, brokers, 3), mc: mailchimptest.NewServer(t, opts...),
		prefix: kafkatest.Prefix(t), t: t}
	// Source status keys are not prefixed per test: a Redis of the test's own.
	h.rdb = redistest.PrivateClient(t)
	h.status = status.NewStore(h.rdb)
	ss, err := source.New(source.Source{ID: "acme", HeapAppID: "app", MailchimpAPIKey: mailchimptest.DefaultAPIKey,
		MailchimpAPIURL: h.mc.APIURL, ActivityWindow: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h.src, _ = ss.Get("acme")
	return h
}

func (h *harness) poller(pageSize int) *poller.Poller { return h.pollerWith(pageSize, nil) }

// pollerWith is poller with cfg changed by edit.
func (h *harness) pollerWith(pageSize int, edit func(*poller.Config)) *poller.Poller {
	ss, _ := source.New(h.src)
	cfg := poller.Config{Brokers: h.brokers, Topics: h.topics, TransactionID: h.prefix + "poller",
		Sources: ss, Owner: lease.New(h.rdb, "me"), States: h.status, Log: zaptest.NewLogger(h.t),
		PageSize: pageSize, MaxBackoff: 200 * time.Millisecond, Now: func() time.Time { return now }}
	if edit != nil {
		edit(&cfg)
	}
	p, err := poller.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Close)
	return p
}

// published returns the committed raw records by kind.
func (h *harness) published(want int) map[string][]*kgo.Record {
	recs := kafkatest.Consume(h.t, h.brokers, h.topics.Raw, want, 30*time.Second)
	out := map[string][]*kgo.Record{}
	for _, r := range recs {
		k := kafka.Header(r, kafka.HeaderKind)
		out[k] = append(out[k], r)
	}
	return out
}

func TestPollerFixtures(t *testing.T) {
	h := newHarness(t)
	h.mc.LoadFixtures()
	p := h.poller(2)
	ctx := context.Background()
	if err := p.Pass(ctx, h.src); err != nil {
		t.Fatal(err)
	}
	// Sent campaigns: regular, plaintext, variate, rss (the draft is not listed);
	// the fixture activity of b3f0a9c1d2: four members, in pages of two.
	got := h.published(8)
	if n := len(got[mailchimp.KindCampaign]); n != 4 {
		t.Errorf("%d campaign objects, want 4", n)
	}
	members := got[mailchimp.KindEmailActivity]
	if len(members) != 4 {
		t.Fatalf("%d activity members, want 4", len(members))
	}
	for _, r := range members {
		m, err := mailchimp.ParseActivityMember(r.Value)
		if err != nil || m.CampaignID != "b3f0a9c1d2" || kafka.Header(r, kafka.HeaderSource) != "acme" {
			t.Errorf("member %s: %v", r.Value, err)
		}
	}
	skipped, err := h.status.SkippedCampaigns(ctx, "acme")
	if err != nil || !strings.Contains(skipped["d5f2c1e3f4"], "variate") || len(skipped) != 1 {
		t.Errorf("skipped %v (%v)", skipped, err)
	}
	if c := p.Cursor("acme", "b3f0a9c1d2"); !c.Since.Equal(now) || c.NextOffset != 0 {
		t.Errorf("cursor %+v", c)
	}

	// A second pass asks since the cursor minus the overlap: only new activity comes.
	h.mc.AddActivity("b3f0a9c1d2", "late.opener@example.com", mailchimptest.Activity{Action: "open", Timestamp: now.Add(-time.Minute), IP: "192.0.2.9"})
	if err := p.Pass(ctx, h.src); err != nil {
		t.Fatal(err)
	}
	got = h.published(8 + 4 + 1)
	if n := len(got[mailchimp.KindEmailActivity]); n != 5 {
		t.Fatalf("%d members after the second pass, want 5 (no page published twice)", n)
	}
}

// TestPollerResumesAfterCrash: a poller that dies mid-campaign leaves a
// cursor at the next page; a new one continues there without gaps or doubles.
func TestPollerResumesAfterCrash(t *testing.T) {
	var crash atomic.Pointer[context.CancelFunc]
	h := newHarness(t, mailchimptest.FaultFunc(func(r *http.Request) *mailchimptest.Fault {
		if strings.Contains(r.URL.Path, "email-activity") && r.URL.Query().Get("offset") == "2000" {
			if c := crash.Swap(nil); c != nil {
				(*c)()
				return &mailchimptest.Fault{Status: 503, Delay: 100 * time.Millisecond}
			}
		}
		return nil
	}))
	camps := h.mc.Generate(7, 1, 2500, 2)
	ctx, cancel := context.WithCancel(context.Background())
	crash.Store(&cancel)
	first := h.poller(1000)
	if err := first.Pass(ctx, h.src); err == nil {
		t.Fatal("the first pass should have died at its third page")
	}
	if c := first.Cursor("acme", camps[0].ID); c.NextOffset != 2000 {
		t.Fatalf("cursor after the crash %+v, want next offset 2000", c)
	}
	second := h.poller(1000)
	if err := second.Pass(context.Background(), h.src); err != nil {
		t.Fatal(err)
	}
	got := h.published(1 + 2500)
	seen := map[string]int{}
	for _, r := range got[mailchimp.KindEmailActivity] {
		var m struct {
			EmailID string `json:"email_id"`
		}
		json.Unmarshal(r.Value, &m)
		seen[m.EmailID]++
	}
	if len(seen) != 2500 {
		t.Fatalf("%d distinct members, want 2500", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("member %s published %d times", id, n)
		}
	}
}

// TestPollerPolite: never more than 10 requests at once per account, 429
// and 403-without-body answers backed off, a 404 campaign dropped for good.
func TestPollerPolite(t *testing.T) {
	var gone atomic.Value
	gone.Store("")
	h := newHarness(t, mailchimptest.WithLatency(20*time.Millisecond), mailchimptest.WithForbiddenFraction(0.3),
		mailchimptest.FaultFunc(func(r *http.Request) *mailchimptest.Fault {
			if id := gone.Load().(string); id != "" && strings.Contains(r.URL.Path, "/reports/"+id+"/") {
				return &mailchimptest.Fault{Status: 404, Body: `{"title":"Resource Not Found","status":404}`}
			}
			return nil
		}))
	camps := h.mc.Generate(3, 40, 30, 1)
	var victim string
	for _, c := range camps {
		if c.Type == "regular" && c.Status == "sent" {
			victim = c.ID
			break
		}
	}
	gone.Store(victim)
	h.mc.Inject(mailchimptest.Fault{Status: 429, RetryAfter: "0", Body: `{"title":"Too Many Requests","status":429}`, Times: 3})
	p := h.poller(1000)
	if err := p.Pass(context.Background(), h.src); err != nil {
		t.Fatal(err)
	}
	if n := h.mc.MaxAttempted(mailchimptest.DefaultAccount); n > mailchimp.MaxConcurrent {
		t.Fatalf("%d requests at once, Mailchimp allows %d", n, mailchimp.MaxConcurrent)
	}
	if c := p.Cursor("acme", victim); c.Stopped == "" {
		t.Fatalf("404 campaign still polled: %+v", c)
	}
	before := h.mc.Requests("/3.0/reports/" + victim)
	if err := p.Pass(context.Background(), h.src); err != nil {
		t.Fatal(err)
	}
	if after := h.mc.Requests("/3.0/reports/" + victim); after != before {
		t.Errorf("a 404 campaign was asked for again (%d requests)", after-before)
	}
}

// TestPollerRefusedKey: a key Mailchimp refuses marks the source.
func TestPollerRefusedKey(t *testing.T) {
	h := newHarness(t)
	h.mc.LoadFixtures()
	h.src.MailchimpAPIKey = "ffffffffffffffffffffffffffffffff-us19"
	err := h.poller(1000).Pass(context.Background(), h.src)
	if err == nil {
		t.Fatal("a refused key passed")
	}
	state, _, _ := h.status.State(context.Background(), "acme")
	if state != "reconnect_needed" {
		t.Fatalf("state %q, want reconnect_needed", state)
	}
}

// TestPollerBackfill: a campaign re-read from the start after it was polled,
// and an old campaign outside the window found by a backfill date.
func TestPollerBackfill(t *testing.T) {
	h := newHarness(t)
	h.mc.LoadFixtures()
	old := mailchimptest.Campaign{ID: "0ld0000001", Type: "regular", Status: "sent", SendTime: now.AddDate(-1, 0, 0),
		ListID: "7c1e5d2a90", Title: "Last year"}
	h.mc.AddCampaign(old)
	h.mc.AddActivity(old.ID, "jordan.lee@example.com", mailchimptest.Activity{Action: "open", Timestamp: old.SendTime.Add(time.Hour), IP: "192.0.2.1"})
	p := h.poller(1000)
	ctx := context.Background()
	if err := p.Pass(ctx, h.src); err != nil {
		t.Fatal(err)
	}
	h.published(8) // 4 campaigns, 4 members; last year's campaign is outside the window
	if err := p.Backfill(ctx, h.src, time.Time{}, "b3f0a9c1d2"); err != nil {
		t.Fatal(err)
	}
	got := h.published(8 + 4)
	if n := len(got[mailchimp.KindEmailActivity]); n != 8 {
		t.Fatalf("%d members after backfilling the campaign, want its 4 again (8)", n)
	}
	if err := p.Backfill(ctx, h.src, now.AddDate(-2, 0, 0), ""); err != nil {
		t.Fatal(err)
	}
	got = h.published(8 + 4 + 5 + 1)
	found := false
	for _, r := range got[mailchimp.KindEmailActivity] {
		if strings.Contains(string(r.Value), old.ID) {
			found = true
		}
	}
	if !found {
		t.Fatal("the backfill date did not reach last year's campaign")
	}
}

// tokenOf is a token store holding one token for every source.
type tokenOf tokens.Token

func (t tokenOf) Get(context.Context, string) (tokens.Token, bool, error) {
	return tokens.Token(t), true, nil
}

// rerouter records the host of every request and delivers it to the
// stand-in, as if the stand-in were that host.
type rerouter struct {
	to    *url.URL
	mu    sync.Mutex
	hosts []string
}

func (rr *rerouter) RoundTrip(req *http.Request) (*http.Response, error) {
	rr.mu.Lock()
	rr.hosts = append(rr.hosts, req.URL.Scheme+"://"+req.URL.Host)
	rr.mu.Unlock()
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = rr.to.Scheme, rr.to.Host, ""
	return http.DefaultTransport.RoundTrip(out)
}

func (rr *rerouter) sent() []string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]string(nil), rr.hosts...)
}

// TestPollerTokenEndpoint: an OAuth token goes only to a Mailchimp data
// centre's API host, or to the source's explicit mailchimp_api_url; for any
// other api_endpoint the poller sends nothing and marks the source.
func TestPollerTokenEndpoint(t *testing.T) {
	h := newHarness(t)
	h.mc.LoadFixtures()
	access := h.mc.IssueToken(mailchimptest.DefaultAccount)
	stand, err := url.Parse(h.mc.URL)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dc       string
		endpoint string
		override bool   // the source sets mailchimp_api_url (the stand-in)
		wantHost string // where the token went; "" for nowhere
	}{
		{name: "mailchimp endpoint", dc: "us21", endpoint: "https://us21.api.mailchimp.com", wantHost: "https://us21.api.mailchimp.com"},
		{name: "mailchimp endpoint with slash", dc: "us21", endpoint: "https://us21.api.mailchimp.com/", wantHost: "https://us21.api.mailchimp.com"},
		{name: "no endpoint: the dc's host", dc: "us6", wantHost: "https://us6.api.mailchimp.com"},
		{name: "another host", dc: "us21", endpoint: "https://evil.example"},
		{name: "plain http", dc: "us21", endpoint: "http://us21.api.mailchimp.com"},
		{name: "mailchimp name as a subdomain", dc: "us21", endpoint: "https://us21.api.mailchimp.com.evil.example"},
		{name: "user info", dc: "us21", endpoint: "https://us21.api.mailchimp.com@evil.example"},
		{name: "port", dc: "us21", endpoint: "https://us21.api.mailchimp.com:8443"},
		{name: "path", dc: "us21", endpoint: "https://us21.api.mailchimp.com/evil"},
		{name: "endpoint of another dc", dc: "us21", endpoint: "https://us6.api.mailchimp.com"},
		{name: "dc that is a host", dc: "evil.example/", endpoint: ""},
		{name: "override wins over a foreign endpoint", dc: "us21", endpoint: "https://evil.example", override: true, wantHost: h.mc.URL},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			h.src = source.Source{ID: fmt.Sprintf("oauth%d", i), HeapAppID: "app", MailchimpOAuth: true, ActivityWindow: 90 * 24 * time.Hour}
			if tt.override {
				h.src.MailchimpAPIURL = h.mc.APIURL
			}
			ss, err := source.New(h.src)
			if err != nil {
				t.Fatal(err)
			}
			h.src, _ = ss.Get(h.src.ID)
			rr := &rerouter{to: stand}
			p := h.pollerWith(1000, func(c *poller.Config) {
				c.Tokens = tokenOf{AccessToken: access, DC: tt.dc, APIEndpoint: tt.endpoint}
				c.HTTP = &http.Client{Transport: rr}
			})
			err = p.Pass(ctx, h.src)
			sent := rr.sent()
			state, reason, _ := h.status.State(ctx, h.src.ID)
			if tt.wantHost == "" {
				if err == nil || !errors.Is(err, tokens.ErrEndpoint) {
					t.Errorf("Pass = %v, want a refusal wrapping tokens.ErrEndpoint", err)
				}
				if len(sent) != 0 {
					t.Errorf("the token was sent to %v", sent)
				}
				if state != status.StateReconnectNeeded || reason == "" {
					t.Errorf("state %q (%q), want %s with a reason", state, reason, status.StateReconnectNeeded)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pass = %v", err)
			}
			if len(sent) == 0 {
				t.Fatal("nothing was polled")
			}
			for _, host := range sent {
				if host != tt.wantHost {
					t.Fatalf("a request went to %s, want only %s", host, tt.wantHost)
				}
			}
		})
	}
}
