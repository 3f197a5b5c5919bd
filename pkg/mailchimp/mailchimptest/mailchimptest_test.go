package mailchimptest_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
)

// Wire shapes the tests decode, as a client would.
type campaignsPage struct {
	Campaigns []struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Status     string `json:"status"`
		SendTime   string `json:"send_time"`
		Recipients struct {
			ListID string `json:"list_id"`
		} `json:"recipients"`
		Settings struct {
			Title       string `json:"title"`
			SubjectLine string `json:"subject_line"`
		} `json:"settings"`
	} `json:"campaigns"`
	TotalItems int   `json:"total_items"`
	Links      []any `json:"_links"`
}

type activityPage struct {
	Emails []struct {
		CampaignID   string `json:"campaign_id"`
		ListID       string `json:"list_id"`
		ListIsActive bool   `json:"list_is_active"`
		EmailID      string `json:"email_id"`
		EmailAddress string `json:"email_address"`
		Activity     []struct {
			Action    string `json:"action"`
			Type      string `json:"type"`
			Timestamp string `json:"timestamp"`
			URL       string `json:"url"`
			IP        string `json:"ip"`
		} `json:"activity"`
	} `json:"emails"`
	CampaignID string `json:"campaign_id"`
	TotalItems int    `json:"total_items"`
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// get calls the API with the default API key unless auth is given.
func get(t *testing.T, rawURL string, auth func(*http.Request)) response {
	t.Helper()
	r, err := do(rawURL, auth)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// do is get for goroutines other than the test's.
func do(rawURL string, auth func(*http.Request)) (response, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return response{}, err
	}
	if auth == nil {
		auth = apiKey(mailchimptest.DefaultAPIKey)
	}
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body}, err
}

func apiKey(key string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth("anystring", key) }
}

func header(v string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", v) }
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// wantProblem checks an application/problem+json answer.
func wantProblem(t *testing.T, r response, status int) mailchimptest.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	p := decode[mailchimptest.Problem](t, r)
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" || p.Instance == "" {
		t.Errorf("problem %+v lacks a field or has the wrong status", p)
	}
	return p
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestCampaigns(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	srv.LoadFixtures()
	gen := srv.Generate(7, 8, 3, 1) // sent every 6 h from 2026-09-01; the 8th is a draft
	tests := []struct {
		name  string
		query string
		ids   []string // nil: only check the total
		total int
	}{
		{"fixtures sent in insertion order", "status=sent&count=4", []string{"b3f0a9c1d2", "c4e1b0d2e3", "d5f2c1e3f4", "e6a3d2f4a5"}, 11},
		{"type rss", "type=rss", []string{"e6a3d2f4a5", gen[3].ID}, 2},
		{"type variate", "type=variate", []string{"d5f2c1e3f4", gen[5].ID}, 2},
		{"drafts", "status=save", []string{"f7b4e3a5b6", gen[7].ID}, 2},
		{"since send time, inclusive", "status=sent&sort_field=send_time&sort_dir=ASC&since_send_time=2026-09-01T12:00:00%2B00:00&before_send_time=2026-09-02T06:00:00Z",
			[]string{gen[2].ID, gen[3].ID, gen[4].ID}, 3},
		{"descending", "status=sent&sort_field=send_time&sort_dir=DESC&before_send_time=2026-09-01T12:00:00Z", []string{gen[1].ID, gen[0].ID}, 2},
		{"paging", "status=sent&sort_field=send_time&sort_dir=ASC&count=2&offset=3", []string{gen[3].ID, gen[4].ID}, 11},
		{"offset past the end", "status=sent&offset=50", []string{}, 11},
		{"default count is 10", "", nil, 13},
		{"zone-less time is UTC", "since_send_time=2026-09-02T12:00:00", []string{"b3f0a9c1d2", "c4e1b0d2e3", "d5f2c1e3f4", "e6a3d2f4a5", gen[6].ID}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, srv.APIURL+"/campaigns?"+tc.query, nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			p := decode[campaignsPage](t, r)
			if p.TotalItems != tc.total {
				t.Errorf("total_items %d, want %d", p.TotalItems, tc.total)
			}
			if p.Links == nil {
				t.Error("no _links")
			}
			if tc.ids == nil {
				if len(p.Campaigns) != 10 {
					t.Errorf("%d campaigns, want the default 10", len(p.Campaigns))
				}
				return
			}
			ids := []string{}
			for _, c := range p.Campaigns {
				ids = append(ids, c.ID)
				if c.Status == "sent" && !strings.HasSuffix(c.SendTime, "+00:00") || c.Status == "save" && c.SendTime != "" {
					t.Errorf("campaign %s %s send_time %q", c.ID, c.Status, c.SendTime)
				}
				if c.Recipients.ListID == "" || c.Settings.Title == "" || c.Settings.SubjectLine == "" || c.Type == "" {
					t.Errorf("campaign %+v lacks a field", c)
				}
			}
			if !slices.Equal(tc.ids, ids) {
				t.Errorf("ids %v, want %v", ids, tc.ids)
			}
		})
	}

	t.Run("shape matches the fixture", func(t *testing.T) {
		r := get(t, srv.APIURL+"/campaigns?count=5", nil)
		var got, want map[string]any
		json.Unmarshal(r.body, &got)
		json.Unmarshal(fixtures.Read("marketing-api/campaigns.json"), &want)
		want["total_items"] = 13.0
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("first page differs from campaigns.json (-want +got):\n%s", diff)
		}
	})

	for _, q := range []string{"count=1001", "count=-1", "count=ten", "offset=-5", "status=done", "type=automation",
		"sort_field=title", "sort_dir=UP", "since_send_time=yesterday", "since_send_time=2026-09-01T12:00:00+00:00" /* unencoded + */} {
		t.Run("400 "+q, func(t *testing.T) {
			p := wantProblem(t, get(t, srv.APIURL+"/campaigns?"+q, nil), http.StatusBadRequest)
			if p.Title != "Invalid Resource" {
				t.Errorf("title %q", p.Title)
			}
		})
	}
}

func TestEmailActivityPaging(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	gen := srv.Generate(42, 2, 2500, 3)
	id := gen[0].ID
	want := srv.Activity(id)
	if len(want) != 2500 {
		t.Fatalf("generated %d members, want 2500", len(want))
	}
	for _, tc := range []struct{ count, maxPages int }{{1000, 4}, {700, 5}, {1, 40}} {
		count := tc.count
		t.Run(fmt.Sprint("count=", count), func(t *testing.T) {
			var got []string
			for offset, page := 0, 0; page < tc.maxPages; offset, page = offset+count, page+1 {
				r := get(t, fmt.Sprintf("%s/reports/%s/email-activity?count=%d&offset=%d", srv.APIURL, id, count, offset), nil)
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				p := decode[activityPage](t, r)
				if p.TotalItems != 2500 || p.CampaignID != id {
					t.Fatalf("total_items %d campaign_id %q", p.TotalItems, p.CampaignID)
				}
				if len(p.Emails) == 0 {
					break
				}
				if len(p.Emails) > count {
					t.Fatalf("%d emails for count %d", len(p.Emails), count)
				}
				for _, e := range p.Emails {
					if e.EmailID != md5hex(strings.ToLower(e.EmailAddress)) {
						t.Fatalf("email_id %s is not md5 of lowercased %s", e.EmailID, e.EmailAddress)
					}
					if e.ListID != gen[0].ListID || !e.ListIsActive || e.CampaignID != id || len(e.Activity) != 3 {
						t.Fatalf("member %+v", e)
					}
					got = append(got, e.EmailAddress)
				}
			}
			if diff := cmp.Diff(emailsOf(want)[:min(len(want), count*tc.maxPages)], got); diff != "" {
				t.Errorf("paged members differ from Activity() (-want +got):\n%s", diff)
			}
			if !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) }) {
				t.Error("members not in address order")
			}
		})
	}

	t.Run("default count is 10", func(t *testing.T) {
		p := decode[activityPage](t, get(t, srv.APIURL+"/reports/"+id+"/email-activity", nil))
		if len(p.Emails) != 10 || p.TotalItems != 2500 {
			t.Errorf("%d emails, total %d", len(p.Emails), p.TotalItems)
		}
	})
	for _, q := range []string{"count=1001", "count=x", "offset=-1", "since=last+week"} {
		t.Run("400 "+q, func(t *testing.T) {
			wantProblem(t, get(t, srv.APIURL+"/reports/"+id+"/email-activity?"+q, nil), http.StatusBadRequest)
		})
	}
}

func emailsOf(ms []mailchimptest.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.EmailAddress
	}
	return out
}

func TestEmailActivitySince(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	gen := srv.Generate(3, 1, 400, 4)
	id := gen[0].ID
	all := srv.Activity(id)
	send := gen[0].SendTime
	for _, since := range []time.Time{{}, send, send.Add(24 * time.Hour), send.Add(48 * time.Hour), send.Add(80 * time.Hour), send.Add(30 * 24 * time.Hour),
		all[0].Activity[2].Timestamp /* exactly an action's time: inclusive */} {
		t.Run(since.Format(time.RFC3339), func(t *testing.T) {
			// Expectation from the accessor: members with an action at or after since, only those actions.
			want := map[string][]string{}
			for _, m := range all {
				for _, a := range m.Activity {
					if !a.Timestamp.Before(since) {
						want[m.EmailID] = append(want[m.EmailID], a.Action+"@"+a.Timestamp.Format(mailchimptest.TimeLayout))
					}
				}
			}
			q := url.Values{"count": {"1000"}}
			if !since.IsZero() {
				q.Set("since", since.Format(mailchimptest.TimeLayout))
			} else {
				for _, m := range all {
					if want[m.EmailID] == nil {
						want[m.EmailID] = []string{}
					}
				}
			}
			p := decode[activityPage](t, get(t, srv.APIURL+"/reports/"+id+"/email-activity?"+q.Encode(), nil))
			got := map[string][]string{}
			for _, e := range p.Emails {
				got[e.EmailID] = []string{}
				for _, a := range e.Activity {
					if !strings.HasSuffix(a.Timestamp, "+00:00") {
						t.Fatalf("timestamp %q not RFC 3339 +00:00", a.Timestamp)
					}
					got[e.EmailID] = append(got[e.EmailID], a.Action+"@"+a.Timestamp)
				}
			}
			if p.TotalItems != len(want) {
				t.Errorf("total_items %d, want %d", p.TotalItems, len(want))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFixtureActivity(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	srv.LoadFixtures()
	want := map[string]any{}
	for _, raw := range fixtures.ActivityMembers() {
		var m map[string]any
		json.Unmarshal(raw, &m)
		want[m["email_id"].(string)] = m
	}
	got := map[string]any{}
	var order []string
	for offset := 0; offset < 6; offset += 3 {
		r := get(t, fmt.Sprintf("%s/reports/b3f0a9c1d2/email-activity?count=3&offset=%d", srv.APIURL, offset), nil)
		var page struct {
			Emails     []map[string]any `json:"emails"`
			TotalItems int              `json:"total_items"`
			CampaignID string           `json:"campaign_id"`
			Links      []any            `json:"_links"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if page.TotalItems != 4 || page.CampaignID != "b3f0a9c1d2" || page.Links == nil {
			t.Errorf("page at %d: total %d, campaign %q", offset, page.TotalItems, page.CampaignID)
		}
		for _, e := range page.Emails {
			got[e["email_id"].(string)] = e
			order = append(order, e["email_address"].(string))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("served members differ from the fixture's (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"full.box@example.com", "jordan.lee@example.com", "mei.chen@example.com", "Priya.Raman@Example.com"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestNotFound(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	srv.LoadFixtures()
	srv.AddCampaign(mailchimptest.Campaign{ID: "0a0a0a0a0a", SendTime: time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC)})
	srv.AddActivity("0a0a0a0a0a", "a@example.com", mailchimptest.Activity{Action: "open", Timestamp: time.Date(2026, 10, 5, 9, 30, 0, 0, time.UTC)})
	if r := get(t, srv.APIURL+"/reports/0a0a0a0a0a/email-activity", nil); r.status != http.StatusOK {
		t.Fatalf("before delete: %d %s", r.status, r.body)
	}
	srv.DeleteCampaign("0a0a0a0a0a")
	want := decode[mailchimptest.Problem](t, response{body: fixtures.Read("marketing-api/error-404.json")})
	for _, path := range []string{"/reports/0a0a0a0a0a/email-activity", "/reports/nosuchcamp/email-activity", "/reports/f7b4e3a5b6/email-activity" /* draft */, "/campaigns/0a0a0a0a0a", "/lists"} {
		t.Run(path, func(t *testing.T) {
			p := wantProblem(t, get(t, srv.APIURL+path, nil), http.StatusNotFound)
			if p.Type != want.Type || p.Title != want.Title || p.Detail != want.Detail {
				t.Errorf("problem %+v, want the shape of %+v", p, want)
			}
		})
	}
	if n := len(srv.Campaigns()); n != 5 {
		t.Errorf("%d campaigns after delete, want the 5 fixtures", n)
	}
	if srv.Activity("0a0a0a0a0a") != nil {
		t.Error("activity of a deleted campaign still there")
	}
}

func TestAuth(t *testing.T) {
	otherKey := "fedcba9876543210fedcba9876543210-us19"
	srv := mailchimptest.NewServer(t, mailchimptest.WithAPIKey("other", otherKey))
	tok := srv.IssueToken("acme")
	revoked := srv.IssueToken("acme")
	srv.RevokeToken(revoked)
	tests := []struct {
		name   string
		auth   func(*http.Request)
		status int
		title  string
	}{
		{"default API key", apiKey(mailchimptest.DefaultAPIKey), 200, ""},
		{"registered API key", apiKey(otherKey), 200, ""},
		{"bearer token", header("Bearer " + tok), 200, ""},
		{"OAuth token", header("OAuth " + tok), 200, ""},
		{"missing", func(*http.Request) {}, 401, "API Key Missing"},
		{"unknown API key", apiKey("00000000000000000000000000000000-us19"), 401, "API Key Invalid"},
		{"token as API key", apiKey(tok), 401, "API Key Invalid"},
		{"unknown token", header("Bearer 5c6ccc561059aa386da9d112215bae55"), 401, "API Key Invalid"},
		{"revoked token", header("Bearer " + revoked), 401, "API Key Invalid"},
		{"unknown scheme", header("Token " + tok), 401, "API Key Invalid"},
		{"bad base64", header("Basic !!!"), 401, "API Key Invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, srv.APIURL+"/campaigns", tc.auth)
			if tc.status == 200 {
				if r.status != 200 {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				return
			}
			if p := wantProblem(t, r, tc.status); p.Title != tc.title {
				t.Errorf("title %q, want %q", p.Title, tc.title)
			}
		})
	}

	metaTests := []struct {
		name    string
		auth    string
		account string // "" = invalid_token
	}{
		{"OAuth header", "OAuth " + tok, "acme"},
		{"bearer header", "Bearer " + tok, "acme"},
		{"revoked", "OAuth " + revoked, ""},
		{"unknown", "OAuth nosuchtoken", ""},
		{"missing", "", ""},
	}
	for _, tc := range metaTests {
		t.Run("metadata "+tc.name, func(t *testing.T) {
			r := get(t, srv.URL+"/oauth2/metadata", header(tc.auth))
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200 in every case: %s", r.status, r.body)
			}
			m := decode[map[string]any](t, r)
			if tc.account == "" {
				if diff := cmp.Diff(map[string]any{"error": "invalid_token"}, m); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			if m["accountname"] != tc.account || m["dc"] != mailchimptest.DefaultDC || m["api_endpoint"] != srv.URL || m["login_url"] != srv.URL {
				t.Errorf("metadata %v", m)
			}
			var want map[string]any
			json.Unmarshal(fixtures.Read("marketing-api/oauth-metadata.json"), &want)
			for k := range want {
				if _, ok := m[k]; !ok {
					t.Errorf("metadata lacks %q", k)
				}
			}
		})
	}
}

func TestOAuthRoundTrip(t *testing.T) {
	srv := mailchimptest.NewServer(t, mailchimptest.WithOAuthClient("app1", "s3cret"), mailchimptest.WithLoginAccount("shop"), mailchimptest.WithDC("us6"))
	srv.LoadFixtures()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	redirect := "https://app.example/oauth/callback?source=7"
	authorize := func(clientID string) *http.Response {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"xyz/+=1"}}
		resp, err := noFollow.Get(srv.URL + "/oauth2/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := authorize("nobody"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown client_id: %d, want 400", resp.StatusCode)
	}
	resp := authorize("app1")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	if loc.Host != "app.example" || loc.Path != "/oauth/callback" || loc.Query().Get("source") != "7" || loc.Query().Get("state") != "xyz/+=1" || code == "" {
		t.Fatalf("redirected to %s", loc)
	}

	exchange := func(form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(srv.URL+"/oauth2/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	good := url.Values{"grant_type": {"authorization_code"}, "client_id": {"app1"}, "client_secret": {"s3cret"}, "redirect_uri": {redirect}, "code": {code}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	for _, tc := range []struct {
		name string
		form url.Values
		err  string
	}{
		{"wrong secret", with("client_secret", "guess"), "invalid_grant"},
		{"wrong redirect", with("redirect_uri", "https://evil.example/cb"), "invalid_grant"},
		{"wrong code", with("code", "0000"), "invalid_grant"},
		{"wrong grant type", with("grant_type", "client_credentials"), "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := exchange(tc.form)
			if status != http.StatusBadRequest || m["error"] != tc.err {
				t.Errorf("%d %v, want 400 %s", status, m, tc.err)
			}
		})
	}
	status, m := exchange(good)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, m)
	}
	var fixture map[string]any
	json.Unmarshal(fixtures.Read("marketing-api/oauth-token.json"), &fixture)
	tok, _ := m["access_token"].(string)
	if tok == "" || tok == fixture["access_token"] {
		t.Fatalf("access token %q", tok)
	}
	fixture["access_token"] = tok
	if diff := cmp.Diff(fixture, m); diff != "" {
		t.Errorf("token answer differs from oauth-token.json (-want +got):\n%s", diff)
	}
	if status, m := exchange(good); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("second use of the code: %d %v, want 400 invalid_grant", status, m)
	}

	meta := decode[map[string]any](t, get(t, srv.URL+"/oauth2/metadata", header("OAuth "+tok)))
	if meta["dc"] != "us6" || meta["accountname"] != "shop" || meta["api_endpoint"] != srv.URL {
		t.Fatalf("metadata %v", meta)
	}
	// A client follows api_endpoint.
	r := get(t, meta["api_endpoint"].(string)+"/3.0/campaigns?status=sent", header("Bearer "+tok))
	if p := decode[campaignsPage](t, r); r.status != 200 || p.TotalItems != 4 {
		t.Errorf("campaigns through api_endpoint: %d %s", r.status, r.body)
	}
	srv.RevokeToken(tok)
	if m := decode[map[string]any](t, get(t, srv.URL+"/oauth2/metadata", header("OAuth "+tok))); m["error"] != "invalid_token" {
		t.Errorf("metadata after revoke: %v", m)
	}
	wantProblem(t, get(t, srv.APIURL+"/campaigns", header("Bearer "+tok)), http.StatusUnauthorized)
}

// TestConcurrencyLimit holds admitted requests in flight until every refusal
// has come back, so the outcome does not depend on timing.
func TestConcurrencyLimit(t *testing.T) {
	tests := []struct {
		name      string
		opts      []mailchimptest.Option
		forbidden int // of the 5 refusals
	}{
		{"429 problem+json", nil, 0},
		{"all 403", []mailchimptest.Option{mailchimptest.WithForbiddenFraction(1)}, 5},
		{"some 403", []mailchimptest.Option{mailchimptest.WithForbiddenFraction(0.4)}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			var entered atomic.Int32
			opts := append([]mailchimptest.Option{mailchimptest.BeforeServe(func(r *http.Request) {
				if r.URL.Path == "/3.0/campaigns" {
					entered.Add(1)
					<-gate
				}
			})}, tc.opts...)
			srv := mailchimptest.NewServer(t, opts...)
			srv.Generate(1, 1, 5, 1)
			tok := srv.IssueToken(mailchimptest.DefaultAccount) // shares the account's limit with the API key
			other := srv.IssueToken("other")

			results := make(chan response, 15)
			var wg sync.WaitGroup
			for i := range 15 {
				auth := apiKey(mailchimptest.DefaultAPIKey)
				if i%2 == 1 {
					auth = header("Bearer " + tok)
				}
				wg.Go(func() {
					r, err := do(srv.APIURL+"/campaigns", auth)
					if err != nil {
						t.Error(err)
					}
					results <- r
				})
			}
			released := false
			release := func() {
				if !released {
					released = true
					close(gate)
				}
			}
			defer release()
			// Every request is either held in BeforeServe or already refused.
			var refused []response
			deadline := time.After(time.Minute)
			for len(refused)+int(entered.Load()) < 15 {
				select {
				case r := <-results:
					refused = append(refused, r)
				case <-time.After(time.Millisecond):
				case <-deadline:
					t.Fatalf("after a minute: %d refused, %d held", len(refused), entered.Load())
				}
			}
			if len(refused) != 5 || entered.Load() != 10 {
				t.Fatalf("%d refused and %d served at once, want 5 and 10", len(refused), entered.Load())
			}
			// Another account is not limited by this one.
			if r := get(t, srv.APIURL+"/ping", header("Bearer "+other)); r.status != 200 {
				t.Errorf("other account: %d", r.status)
			}
			release()
			wg.Wait()
			close(results)

			forbidden := 0
			for _, r := range refused {
				switch r.status {
				case http.StatusForbidden:
					forbidden++
					if len(r.body) != 0 {
						t.Errorf("403 with body %q", r.body)
					}
				case http.StatusTooManyRequests:
					if r.header.Get("Content-Type") != "application/problem+json" || string(r.body) != string(fixtures.Read("marketing-api/error-429.json")) {
						t.Errorf("429 %q %s", r.header.Get("Content-Type"), r.body)
					}
				default:
					t.Errorf("refusal with %d", r.status)
				}
			}
			if forbidden != tc.forbidden {
				t.Errorf("%d of 5 refusals were 403, want %d", forbidden, tc.forbidden)
			}
			ok := 0
			for r := range results {
				if r.status == http.StatusOK {
					ok++
				}
			}
			if ok != 10 {
				t.Errorf("%d requests served, want 10", ok)
			}
			if n := srv.MaxConcurrent(mailchimptest.DefaultAccount); n != 10 {
				t.Errorf("MaxConcurrent %d, want 10", n)
			}
			if n := srv.MaxAttempted(mailchimptest.DefaultAccount); n < 11 {
				t.Errorf("MaxAttempted %d, want more than 10", n)
			}
			if n := srv.Throttled(mailchimptest.DefaultAccount); n != 5 {
				t.Errorf("Throttled %d, want 5", n)
			}
			if n := srv.MaxConcurrent("other"); n != 1 {
				t.Errorf("MaxConcurrent(other) %d, want 1", n)
			}
		})
	}

	t.Run("sequential client stays under", func(t *testing.T) {
		srv := mailchimptest.NewServer(t, mailchimptest.WithLatency(time.Millisecond))
		for range 20 {
			get(t, srv.APIURL+"/ping", nil)
		}
		if n := srv.MaxAttempted(mailchimptest.DefaultAccount); n != 1 {
			t.Errorf("MaxAttempted %d, want 1", n)
		}
	})
}

func TestFaults(t *testing.T) {
	srv := mailchimptest.NewServer(t)
	srv.LoadFixtures()
	srv.Inject(
		mailchimptest.Fault{Status: 503, RetryAfter: "3", Body: `{"type":"x","title":"Service Unavailable","status":503,"detail":"d","instance":"i"}`},
		mailchimptest.Fault{Status: 500, Times: 2},
		mailchimptest.Fault{Status: 200, Body: `{"campaigns":[`}, // malformed 2xx
		mailchimptest.Fault{},                                    // default 503
	)
	for i, want := range []struct {
		status     int
		retryAfter string
		ct         string
	}{{503, "3", "application/problem+json"}, {500, "", ""}, {500, "", ""}, {200, "", "application/json"}, {503, "", ""}, {200, "", "application/json; charset=utf-8"}} {
		r := get(t, srv.APIURL+"/campaigns", nil)
		if r.status != want.status || r.header.Get("Retry-After") != want.retryAfter || (want.ct != "" && r.header.Get("Content-Type") != want.ct) {
			t.Errorf("request %d: %d Retry-After %q Content-Type %q, want %+v", i, r.status, r.header.Get("Retry-After"), r.header.Get("Content-Type"), want)
		}
	}

	t.Run("delay longer than the client's timeout", func(t *testing.T) {
		srv.Inject(mailchimptest.Fault{Status: 200, Delay: 10 * time.Second})
		c := &http.Client{Timeout: 100 * time.Millisecond}
		req, _ := http.NewRequest(http.MethodGet, srv.APIURL+"/campaigns", nil)
		req.SetBasicAuth("x", mailchimptest.DefaultAPIKey)
		start := time.Now()
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("no timeout: %d", resp.StatusCode)
		}
		if time.Since(start) > 5*time.Second {
			t.Error("the client waited for the whole delay")
		}
		if r := get(t, srv.APIURL+"/campaigns", nil); r.status != 200 {
			t.Errorf("after the timeout: %d", r.status)
		}
	})

	t.Run("faults spare OAuth and unauthenticated requests", func(t *testing.T) {
		srv.Inject(mailchimptest.Fault{Status: 502})
		if r := get(t, srv.URL+"/oauth2/metadata", header("OAuth x")); r.status != 200 {
			t.Errorf("metadata took the fault: %d", r.status)
		}
		wantProblem(t, get(t, srv.APIURL+"/campaigns", func(*http.Request) {}), 401)
		if r := get(t, srv.APIURL+"/campaigns", nil); r.status != 502 {
			t.Errorf("API request: %d, want the injected 502", r.status)
		}
	})

	t.Run("ClearFaults", func(t *testing.T) {
		srv.Inject(mailchimptest.Fault{Status: 500, Times: 5})
		srv.ClearFaults()
		if r := get(t, srv.APIURL+"/campaigns", nil); r.status != 200 {
			t.Errorf("%d after ClearFaults", r.status)
		}
	})

	t.Run("FaultFunc per request", func(t *testing.T) {
		srv := mailchimptest.NewServer(t, mailchimptest.FaultFunc(func(r *http.Request) *mailchimptest.Fault {
			if strings.Contains(r.URL.Path, "c4e1b0d2e3") {
				return &mailchimptest.Fault{Status: 500}
			}
			return nil
		}))
		srv.LoadFixtures()
		if r := get(t, srv.APIURL+"/reports/c4e1b0d2e3/email-activity", nil); r.status != 500 {
			t.Errorf("faulty campaign: %d", r.status)
		}
		if r := get(t, srv.APIURL+"/reports/b3f0a9c1d2/email-activity", nil); r.status != 200 {
			t.Errorf("other campaign: %d", r.status)
		}
	})
}

func TestLatencyAndRequests(t *testing.T) {
	srv := mailchimptest.NewServer(t, mailchimptest.WithLatency(50*time.Millisecond))
	srv.LoadFixtures()
	start := time.Now()
	get(t, srv.APIURL+"/campaigns", nil)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered in %v, latency is 50ms", d)
	}
	for range 3 {
		get(t, srv.APIURL+"/reports/b3f0a9c1d2/email-activity", nil)
	}
	get(t, srv.APIURL+"/reports/nosuch/email-activity", nil)
	get(t, srv.URL+"/oauth2/metadata", header("OAuth x"))
	for prefix, want := range map[string]int{"/3.0/campaigns": 1, "/3.0/reports/": 4, "/3.0/reports/b3f0a9c1d2/": 3, "/oauth2/": 1, "/3.0/": 5, "/": 6} {
		if n := srv.Requests(prefix); n != want {
			t.Errorf("Requests(%q) = %d, want %d", prefix, n, want)
		}
	}
}

func TestGenerate(t *testing.T) {
	a, b := mailchimptest.NewService(), mailchimptest.NewService()
	ca, cb := a.Generate(99, 7, 50, 3), b.Generate(99, 7, 50, 3)
	if diff := cmp.Diff(ca, cb); diff != "" {
		t.Fatalf("campaigns differ for the same seed:\n%s", diff)
	}
	types := map[string]int{}
	drafts := 0
	for _, c := range ca {
		types[c.Type]++
		if c.Status == mailchimptest.StatusSave {
			drafts++
			if !c.SendTime.IsZero() || a.Activity(c.ID) != nil {
				t.Errorf("draft %s has a send time or activity", c.ID)
			}
			continue
		}
		ma, mb := a.Activity(c.ID), b.Activity(c.ID)
		if diff := cmp.Diff(ma, mb); diff != "" {
			t.Fatalf("activity differs for the same seed:\n%s", diff)
		}
		if len(ma) != 50 {
			t.Errorf("%d members", len(ma))
		}
		for _, m := range ma {
			if len(m.Activity) != 3 || m.EmailID != md5hex(strings.ToLower(m.EmailAddress)) {
				t.Fatalf("member %+v", m)
			}
			for _, act := range m.Activity {
				if act.Timestamp.Before(c.SendTime) || (act.Action == "bounce") != (act.Type != "") || (act.Action == "click") != (act.URL != "") {
					t.Fatalf("action %+v", act)
				}
			}
		}
	}
	for _, typ := range []string{"regular", "plaintext", "absplit", "rss", "variate"} {
		if types[typ] == 0 {
			t.Errorf("no %s campaign in %v", typ, types)
		}
	}
	if drafts != 1 {
		t.Errorf("%d drafts, want 1", drafts)
	}
	if c := mailchimptest.NewService().Generate(100, 7, 50, 3); c[0].ID == ca[0].ID {
		t.Error("another seed gave the same campaign ids")
	}
}

// TestVolume pages 100k members of one campaign at count=1000.
func TestVolume(t *testing.T) {
	if testing.Short() {
		t.Skip("volume")
	}
	srv := mailchimptest.NewServer(t)
	id := srv.Generate(5, 1, 100_000, 2)[0].ID
	seen := map[string]bool{}
	for offset := 0; ; offset += 1000 {
		p := decode[activityPage](t, get(t, fmt.Sprintf("%s/reports/%s/email-activity?count=1000&offset=%d", srv.APIURL, id, offset), nil))
		if p.TotalItems != 100_000 {
			t.Fatalf("total_items %d", p.TotalItems)
		}
		if len(p.Emails) == 0 {
			break
		}
		for _, e := range p.Emails {
			seen[e.EmailID] = true
		}
	}
	if len(seen) != 100_000 {
		t.Errorf("%d distinct members paged, want 100000", len(seen))
	}
	if n := srv.Requests("/3.0/reports/"); n != 101 {
		t.Errorf("%d requests", n)
	}
}

// TestConcurrentUse mutates data while pages are served (for -race).
func TestConcurrentUse(t *testing.T) {
	srv := mailchimptest.NewServer(t, mailchimptest.WithConcurrencyLimit(0))
	id := srv.Generate(11, 1, 200, 1)[0].ID
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				srv.AddActivity(id, fmt.Sprintf("new%d.%d@example.com", i, j), mailchimptest.Activity{Action: "open", Timestamp: time.Date(2026, 9, 2, 0, 0, 0, 0, time.UTC)})
			}
		})
		wg.Go(func() {
			for range 10 {
				if r, err := do(srv.APIURL+"/reports/"+id+"/email-activity?count=100", nil); err != nil || r.status != 200 {
					t.Errorf("%d %v", r.status, err)
				}
				srv.Campaigns()
				srv.Activity(id)
			}
		})
	}
	wg.Wait()
	if n := len(srv.Activity(id)); n != 400 {
		t.Errorf("%d members, want 400", n)
	}
}
