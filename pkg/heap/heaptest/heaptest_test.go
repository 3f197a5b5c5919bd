package heaptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the stand-in's clock in these tests: time moves only when a
// test says so, so rate-limit windows and Retry-After values are exact.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newServer starts a stand-in on a fake clock set to t0.
func newServer(t *testing.T, opts ...Option) (*Server, *fakeClock) {
	t.Helper()
	srv := NewServer(t, opts...)
	clk := &fakeClock{t: t0}
	srv.mu.Lock()
	srv.now = clk.Now
	srv.mu.Unlock()
	return srv, clk
}

func newClient() *heap.Client { return &heap.Client{Timeout: 30 * time.Second} }

func track(t *testing.T, srv *Server, app string, evs ...heap.Event) error {
	t.Helper()
	return newClient().Track(context.Background(), srv.URL, app, evs)
}

func ev(identity, key string) heap.Event {
	return heap.Event{Identity: identity, Event: "Email Opened", Timestamp: "2025-06-01T11:59:00.000Z", IdempotencyKey: key}
}

// many returns n events for distinct identities with distinct keys.
func many(n int) []heap.Event {
	evs := make([]heap.Event, n)
	for i := range evs {
		evs[i] = ev(fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("k%d", i))
	}
	return evs
}

// send makes a raw request, for bodies the real client never sends.
func send(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keysOf(as []Accepted) []string {
	var ks []string
	for _, a := range as {
		ks = append(ks, a.AppID+"/"+a.IdempotencyKey)
	}
	return ks
}

func TestAcceptedRecorded(t *testing.T) {
	srv, _ := newServer(t)
	first := heap.Event{
		Identity:       "a@example.com",
		Event:          "Email Opened",
		Timestamp:      "2025-06-01T11:59:00.000Z",
		Properties:     []heap.Property{{Key: "campaign", Value: "spring"}, {Key: "count", Value: "3"}},
		IdempotencyKey: "k1",
	}
	second := heap.Event{Identity: "b@example.com", Event: "Email Clicked"}
	if err := track(t, srv, "111", first, second); err != nil {
		t.Fatalf("Track app 111: %v", err)
	}
	if err := track(t, srv, "222", ev("a@example.com", "k1")); err != nil {
		t.Fatalf("Track app 222: %v", err)
	}
	want := []Accepted{
		{AppID: "111", Event: Event{Identity: "a@example.com", Event: "Email Opened", Timestamp: "2025-06-01T11:59:00.000Z",
			Properties: map[string]any{"campaign": "spring", "count": "3"}, IdempotencyKey: "k1"}, ReceivedAt: t0},
		{AppID: "111", Event: EventOf(second), ReceivedAt: t0},
		{AppID: "222", Event: EventOf(ev("a@example.com", "k1")), ReceivedAt: t0},
	}
	if diff := cmp.Diff(want, srv.Accepted()); diff != "" {
		t.Errorf("Accepted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Requests: 2, Accepted: 3}, srv.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestDedup(t *testing.T) {
	type req struct {
		app string
		evs []heap.Event
	}
	tests := []struct {
		name     string
		reqs     []req
		wantKept []string // app/key in arrival order
		wantDups int
	}{
		{
			name:     "same key twice in one app is kept once",
			reqs:     []req{{"1", []heap.Event{ev("a", "k1")}}, {"1", []heap.Event{ev("a", "k1")}}},
			wantKept: []string{"1/k1"},
			wantDups: 1,
		},
		{
			name:     "same key twice in one request is kept once",
			reqs:     []req{{"1", []heap.Event{ev("a", "k1"), ev("b", "k1")}}},
			wantKept: []string{"1/k1"},
			wantDups: 1,
		},
		{
			name:     "same key in two apps is kept twice",
			reqs:     []req{{"1", []heap.Event{ev("a", "k1")}}, {"2", []heap.Event{ev("a", "k1")}}},
			wantKept: []string{"1/k1", "2/k1"},
		},
		{
			name:     "a resent batch keeps only what is new",
			reqs:     []req{{"1", []heap.Event{ev("a", "k1")}}, {"1", []heap.Event{ev("a", "k1"), ev("a", "k2")}}},
			wantKept: []string{"1/k1", "1/k2"},
			wantDups: 1,
		},
		{
			name:     "events without a key are never deduplicated",
			reqs:     []req{{"1", []heap.Event{ev("a", "")}}, {"1", []heap.Event{ev("a", "")}}},
			wantKept: []string{"1/", "1/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t)
			for i, r := range tt.reqs {
				// A duplicate is answered 2xx: "will not update data", not an error.
				if err := track(t, srv, r.app, r.evs...); err != nil {
					t.Fatalf("request %d: Track: %v", i, err)
				}
			}
			if diff := cmp.Diff(tt.wantKept, keysOf(srv.Accepted())); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if got := srv.Stats().Duplicates; got != tt.wantDups {
				t.Errorf("Stats().Duplicates = %d, want %d", got, tt.wantDups)
			}
		})
	}
}

// sendable is evs as heap.Client sends them, or false when one has a
// property heap.Event cannot carry (a number, a bool ...).
func sendable(evs []Event) ([]heap.Event, bool) {
	var out []heap.Event
	for _, e := range evs {
		he := heap.Event{Identity: e.Identity, Event: e.Event, Timestamp: e.Timestamp, IdempotencyKey: e.IdempotencyKey}
		for _, k := range slices.Sorted(maps.Keys(e.Properties)) {
			v, ok := e.Properties[k].(string)
			if !ok {
				return nil, false
			}
			he.Properties = append(he.Properties, heap.Property{Key: k, Value: v})
		}
		out = append(out, he)
	}
	return out, true
}

func TestValidation(t *testing.T) {
	sev := func(identity, key string) Event { return EventOf(ev(identity, key)) }
	withProps := func(props map[string]any) Event {
		e := sev("a", "k")
		e.Properties = props
		return e
	}
	withIdentity := func(id string) Event { return sev(id, "k") }
	withName := func(name string) Event {
		e := sev("a", "k")
		e.Event = name
		return e
	}
	withTimestamp := func(ts string) Event {
		e := sev("a", "k")
		e.Timestamp = ts
		return e
	}
	manyEvents := func(n int) []Event {
		var evs []Event
		for _, e := range many(n) {
			evs = append(evs, EventOf(e))
		}
		return evs
	}
	tests := []struct {
		name   string
		app    string  // sent through heap.Client when raw is empty and it can
		evs    []Event // sent as a raw body when heap.Client cannot
		raw    string  // sent as is, for bodies heap.Client never sends
		wantOK bool
		kept   int // events kept when accepted
	}{
		{name: "missing app_id", raw: `{"events":[{"identity":"a","event":"e"}]}`},
		{name: "empty app_id", app: "", evs: manyEvents(1)},
		{name: "empty events", raw: `{"app_id":"1","events":[]}`},
		{name: "1001 events", raw: mustJSON(t, Request{AppID: "1", Events: manyEvents(1001)})},
		{name: "1000 events", app: "1", evs: manyEvents(1000), wantOK: true, kept: 1000},
		{name: "empty identity", app: "1", evs: []Event{withIdentity("")}},
		{name: "identity of 255 characters", app: "1", evs: []Event{withIdentity(strings.Repeat("i", 255))}, wantOK: true, kept: 1},
		{name: "identity of 255 multibyte characters", app: "1", evs: []Event{withIdentity(strings.Repeat("é", 255))}, wantOK: true, kept: 1},
		{name: "identity of 256 characters", app: "1", evs: []Event{withIdentity(strings.Repeat("i", 256))}},
		{name: "missing event name", app: "1", evs: []Event{withName("")}},
		{name: "event name of 1024 characters", app: "1", evs: []Event{withName(strings.Repeat("n", 1024))}, wantOK: true, kept: 1},
		{name: "event name of 1025 characters", app: "1", evs: []Event{withName(strings.Repeat("n", 1025))}},
		{name: "property value of 1023 characters", app: "1", evs: []Event{withProps(map[string]any{"v": strings.Repeat("v", 1023)})}, wantOK: true, kept: 1},
		{name: "property value of 1023 multibyte characters", app: "1", evs: []Event{withProps(map[string]any{"v": strings.Repeat("日", 1023)})}, wantOK: true, kept: 1},
		{name: "property value of 1024 characters", app: "1", evs: []Event{withProps(map[string]any{"v": strings.Repeat("v", 1024)})}},
		{name: "truncated property value", app: "1", evs: []Event{withProps(map[string]any{"v": heap.Truncate(strings.Repeat("🎉", 5000))})}, wantOK: true, kept: 1},
		{name: "property key of 1023 characters", app: "1", evs: []Event{withProps(map[string]any{strings.Repeat("k", 1023): "v"})}, wantOK: true, kept: 1},
		{name: "property key of 1024 characters", app: "1", evs: []Event{withProps(map[string]any{strings.Repeat("k", 1024): "v"})}},
		{name: "number properties", app: "1", evs: []Event{withProps(map[string]any{"i": 42, "f": -1.5, "e": 1e300, "s": "x"})}, wantOK: true, kept: 1},
		{name: "number property of 1024 characters", raw: `{"app_id":"1","events":[{"identity":"a","event":"e","properties":{"n":` + strings.Repeat("9", 1024) + `}}]}`},
		{name: "bool property", app: "1", evs: []Event{withProps(map[string]any{"b": true})}},
		{name: "object property", app: "1", evs: []Event{withProps(map[string]any{"o": map[string]any{"x": "y"}})}},
		{name: "array property", app: "1", evs: []Event{withProps(map[string]any{"a": []any{"x"}})}},
		{name: "null property", app: "1", evs: []Event{withProps(map[string]any{"n": nil})}},
		{name: "timestamp with offset", app: "1", evs: []Event{withTimestamp("2025-06-01T13:59:00.5+02:00")}, wantOK: true, kept: 1},
		{name: "no timestamp", app: "1", evs: []Event{withTimestamp("")}, wantOK: true, kept: 1},
		{name: "bad timestamp", app: "1", evs: []Event{withTimestamp("yesterday")}},
		{name: "timestamp without T", app: "1", evs: []Event{withTimestamp("2025-06-01 11:59:00Z")}},
		{name: "one bad event rejects the whole batch", app: "1", evs: []Event{sev("a", "k1"), withIdentity(""), sev("b", "k2")}},
		{name: "invalid JSON", raw: `{"app_id":"1","events":[`},
		{name: "JSON that is not an object", raw: `[{"app_id":"1"}]`},
		{name: "event that is not an object", raw: `{"app_id":"1","events":["e"]}`},
		{name: "single-event body", raw: `{"app_id":"1","identity":"a","event":"e","properties":{"p":"v"},"idempotency_key":"k"}`, wantOK: true, kept: 1},
		{name: "single-event body without identity", raw: `{"app_id":"1","event":"e"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t)
			var ok bool
			if tt.raw != "" {
				status, _, body := send(t, http.MethodPost, srv.URL+heap.TrackPath, tt.raw)
				switch status {
				case http.StatusOK:
					ok = true
				case http.StatusBadRequest:
				default:
					t.Fatalf("status %d (%s), want 200 or 400", status, body)
				}
			} else if evs, can := sendable(tt.evs); !can {
				status, _, body := send(t, http.MethodPost, srv.URL+heap.TrackPath, mustJSON(t, Request{AppID: tt.app, Events: tt.evs}))
				if ok = status == http.StatusOK; !ok && status != http.StatusBadRequest {
					t.Fatalf("status %d (%s), want 200 or 400", status, body)
				}
			} else {
				err := track(t, srv, tt.app, evs...)
				ok = err == nil
				if err != nil && (!errors.Is(err, heap.ErrRejected) || heap.Retryable(err)) {
					t.Fatalf("Track: %v; want nil or a rejection that is not retryable", err)
				}
			}
			if ok != tt.wantOK {
				t.Fatalf("accepted = %v, want %v", ok, tt.wantOK)
			}
			wantRejected := 0
			if !tt.wantOK {
				wantRejected = 1
			}
			st := srv.Stats()
			if st.Accepted != tt.kept || st.Rejected != wantRejected {
				t.Errorf("Stats() = %+v, want Accepted %d and Rejected %d", st, tt.kept, wantRejected)
			}
		})
	}
}

func TestSingleEventBodyRecorded(t *testing.T) {
	srv, _ := newServer(t)
	status, _, body := send(t, http.MethodPost, srv.URL+heap.TrackPath,
		`{"app_id":"1","identity":"a","event":"e","timestamp":"2025-06-01T11:59:00.000Z","properties":{"p":"v","n":1},"idempotency_key":"k"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", status, body)
	}
	want := []Accepted{{AppID: "1", ReceivedAt: t0, Event: Event{
		Identity: "a", Event: "e", Timestamp: "2025-06-01T11:59:00.000Z",
		Properties: map[string]any{"p": "v", "n": json.Number("1")}, IdempotencyKey: "k",
	}}}
	if diff := cmp.Diff(want, srv.Accepted()); diff != "" {
		t.Errorf("Accepted (-want +got):\n%s", diff)
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{http.MethodPost, "/api/track/", http.StatusNotFound},
		{http.MethodPost, "/api/tracks", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusNotFound},
		{http.MethodPost, "/api/add_user_properties/", http.StatusNotFound},
		// Served (userprops_test.go), but a track body is not a valid one.
		{http.MethodPost, heap.UserPropertiesPath, http.StatusBadRequest},
		{http.MethodGet, heap.TrackPath, http.StatusMethodNotAllowed},
		{http.MethodPut, heap.TrackPath, http.StatusMethodNotAllowed},
		{http.MethodPost, heap.TrackPath, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			srv, _ := newServer(t)
			status, hdr, body := send(t, tt.method, srv.URL+tt.path, mustJSON(t, Request{AppID: "1", Events: []Event{EventOf(ev("a", "k"))}}))
			if status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", status, body, tt.wantStatus)
			}
			if status == http.StatusMethodNotAllowed && hdr.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", hdr.Get("Allow"))
			}
			wantKept := 0
			if status == http.StatusOK {
				wantKept = 1
			}
			if got := len(srv.Accepted()); got != wantKept {
				t.Errorf("kept %d events, want %d", got, wantKept)
			}
		})
	}
}

// step is one request of a rate-limit scenario: one event per identity
// listed, each with a fresh idempotency key.
type step struct {
	advance   time.Duration // move the fake clock first
	app       string
	ids       []string
	throttled time.Duration // 0: accepted; else want 429 with this Retry-After
	limit     string        // when throttled: "app" or "identity", the limit named in the answer
}

func repeat(id string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = id
	}
	return ids
}

func distinct(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return ids
}

func concat(idss ...[]string) []string {
	var all []string
	for _, ids := range idss {
		all = append(all, ids...)
	}
	return all
}

func TestRateLimits(t *testing.T) {
	testsupport.Integration(t, "waits out real rate-limit windows")
	small := Limits{PerApp: 10, PerIdentity: 4, Window: time.Minute}
	tests := []struct {
		name   string
		limits *Limits // nil: DocumentedLimits
		steps  []step
	}{
		{
			name:   "identity budget",
			limits: &small,
			steps: []step{
				{app: "1", ids: repeat("a", 4)},
				{app: "1", ids: []string{"a"}, throttled: time.Minute, limit: "identity"},
				{app: "1", ids: []string{"b"}},
				{app: "2", ids: repeat("a", 4)},
				{app: "1", ids: []string{"A"}}, // identities are case-sensitive
				{app: "1", ids: []string{"c", "a"}, throttled: time.Minute, limit: "identity"},
				{app: "1", ids: []string{"c"}},
			},
		},
		{
			name:   "app budget",
			limits: &small,
			steps: []step{
				{app: "1", ids: concat(repeat("a", 4), repeat("b", 4))},
				{app: "1", ids: repeat("c", 3), throttled: time.Minute, limit: "app"},
				{app: "1", ids: repeat("c", 2)},
				{app: "1", ids: []string{"d"}, throttled: time.Minute, limit: "app"},
				{app: "2", ids: []string{"d"}},
			},
		},
		{
			name:   "identity window slides",
			limits: &small,
			steps: []step{
				{app: "1", ids: repeat("a", 2)},
				{advance: 30 * time.Second, app: "1", ids: repeat("a", 2)},
				{advance: time.Second, app: "1", ids: []string{"a"}, throttled: 29 * time.Second, limit: "identity"},
				{advance: 28 * time.Second, app: "1", ids: []string{"a"}, throttled: time.Second, limit: "identity"},
				// Half a second left: Retry-After rounds up, never to zero.
				{advance: 500 * time.Millisecond, app: "1", ids: []string{"a"}, throttled: time.Second, limit: "identity"},
				{advance: 500 * time.Millisecond, app: "1", ids: []string{"a"}}, // t0+60s: the first two expired
				{app: "1", ids: []string{"a"}},
				{app: "1", ids: []string{"a"}, throttled: 30 * time.Second, limit: "identity"},
				{advance: 30 * time.Second, app: "1", ids: repeat("a", 2)},
			},
		},
		{
			name:   "Retry-After waits for as many expirations as the request needs",
			limits: &small,
			steps: []step{
				{app: "1", ids: []string{"a"}},
				{advance: 10 * time.Second, app: "1", ids: []string{"a"}},
				{advance: 10 * time.Second, app: "1", ids: []string{"a"}},
				{advance: 10 * time.Second, app: "1", ids: []string{"a"}},
				// t0+40s, four in the window; three more need the t0+20s one gone.
				{advance: 10 * time.Second, app: "1", ids: repeat("a", 3), throttled: 40 * time.Second, limit: "identity"},
				{advance: 39 * time.Second, app: "1", ids: repeat("a", 3), throttled: time.Second, limit: "identity"},
				{advance: time.Second, app: "1", ids: repeat("a", 3)},
			},
		},
		{
			name:   "app window slides",
			limits: &small,
			steps: []step{
				{app: "1", ids: distinct("x", 4)},
				{advance: 20 * time.Second, app: "1", ids: distinct("y", 4)},
				{advance: 20 * time.Second, app: "1", ids: distinct("z", 2)},
				{advance: time.Second, app: "1", ids: distinct("w", 3), throttled: 19 * time.Second, limit: "app"},
				{advance: 19 * time.Second, app: "1", ids: distinct("w", 3)},
				{app: "1", ids: distinct("v", 2), throttled: 20 * time.Second, limit: "app"},
			},
		},
		{
			name:   "identity wait longer than app wait",
			limits: &small,
			steps: []step{
				{app: "1", ids: concat(repeat("b", 4), repeat("c", 2))},
				{advance: 30 * time.Second, app: "1", ids: repeat("a", 4)},
				{advance: 10 * time.Second, app: "1", ids: []string{"a"}, throttled: 50 * time.Second, limit: "identity"},
			},
		},
		{
			name:   "app wait longer than identity wait",
			limits: &small,
			steps: []step{
				{app: "1", ids: repeat("a", 4)},
				{advance: 30 * time.Second, app: "1", ids: concat(repeat("b", 4), repeat("c", 2))},
				{advance: 10 * time.Second, app: "1", ids: concat([]string{"a"}, repeat("d", 4)), throttled: 50 * time.Second, limit: "app"},
			},
		},
		{
			name: "documented: 1000 events for one identity in one request, then the 1001st",
			steps: []step{
				{app: "1", ids: repeat("a", 1000)},
				{advance: 59 * time.Second, app: "1", ids: []string{"a"}, throttled: time.Second, limit: "identity"},
				{app: "1", ids: []string{"b"}},
				{app: "2", ids: []string{"a"}},
				{advance: time.Second, app: "1", ids: []string{"a"}},
			},
		},
		{
			name: "documented: 1000 events for one identity across requests, then the 1001st",
			steps: []step{
				{app: "1", ids: repeat("a", 400)},
				{advance: 10 * time.Second, app: "1", ids: repeat("a", 400)},
				{advance: 10 * time.Second, app: "1", ids: repeat("a", 200)},
				{advance: 10 * time.Second, app: "1", ids: []string{"a"}, throttled: 30 * time.Second, limit: "identity"},
				{advance: 30 * time.Second, app: "1", ids: repeat("a", 400)},
				{app: "1", ids: []string{"a"}, throttled: 10 * time.Second, limit: "identity"},
			},
		},
		{
			name: "documented: 15000 events per app",
			steps: func() []step {
				var s []step
				for i := range 15 {
					s = append(s, step{app: "1", ids: repeat(fmt.Sprintf("u%d", i), 1000)})
				}
				return append(s,
					step{app: "1", ids: []string{"new"}, throttled: time.Minute, limit: "app"},
					step{app: "2", ids: []string{"new"}},
					step{advance: time.Minute, app: "1", ids: repeat("new", 1000)},
				)
			}(),
		},
		{
			name:   "Limits{} disables rate limits",
			limits: &Limits{},
			steps: []step{
				{app: "1", ids: repeat("a", 1000)},
				{app: "1", ids: repeat("a", 1000)},
				{app: "1", ids: repeat("a", 1000)},
			},
		},
		{
			name:   "no window disables rate limits",
			limits: &Limits{PerApp: 1, PerIdentity: 1},
			steps: []step{
				{app: "1", ids: repeat("a", 2)},
				{app: "1", ids: repeat("a", 2)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.limits != nil {
				opts = append(opts, WithLimits(*tt.limits))
			}
			srv, clk := newServer(t, opts...)
			kept, throttled := 0, 0
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				evs := make([]heap.Event, len(st.ids))
				for j, id := range st.ids {
					evs[j] = ev(id, fmt.Sprintf("s%d-e%d", i, j))
				}
				err := track(t, srv, st.app, evs...)
				if st.throttled == 0 {
					if err != nil {
						t.Fatalf("step %d (t0+%v): Track: %v, want nil", i, clk.Now().Sub(t0), err)
					}
					kept += len(evs)
				} else {
					throttled++
					var se *httperr.StatusError
					if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests {
						t.Fatalf("step %d (t0+%v): Track: %v, want HTTP 429", i, clk.Now().Sub(t0), err)
					}
					if !heap.Retryable(err) || errors.Is(err, heap.ErrRejected) {
						t.Errorf("step %d: 429 not classified retryable", i)
					}
					if got := heap.RetryAfter(err); got != st.throttled {
						t.Errorf("step %d (t0+%v): Retry-After %v, want %v", i, clk.Now().Sub(t0), got, st.throttled)
					}
					if want := st.limit + " rate limit"; !strings.Contains(se.Body, want) {
						t.Errorf("step %d: body %q does not name the %q", i, se.Body, want)
					}
				}
				if got := len(srv.Accepted()); got != kept {
					t.Fatalf("step %d: %d events kept, want %d", i, got, kept)
				}
			}
			if got := srv.Stats().Throttled; got != throttled {
				t.Errorf("Stats().Throttled = %d, want %d", got, throttled)
			}
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	srv, clk := newServer(t, WithLimits(Limits{PerIdentity: 1, Window: time.Minute}))
	body := mustJSON(t, Request{AppID: "1", Events: []Event{EventOf(ev("a", ""))}})
	if status, _, b := send(t, http.MethodPost, srv.URL+heap.TrackPath, body); status != http.StatusOK {
		t.Fatalf("first request: status %d (%s)", status, b)
	}
	for _, advance := range []time.Duration{0, 30 * time.Second, 29*time.Second + 999*time.Millisecond} {
		clk.Advance(advance)
		status, hdr, b := send(t, http.MethodPost, srv.URL+heap.TrackPath, body)
		if status != http.StatusTooManyRequests {
			t.Fatalf("t0+%v: status %d (%s), want 429", clk.Now().Sub(t0), status, b)
		}
		var secs int
		if _, err := fmt.Sscanf(hdr.Get("Retry-After"), "%d", &secs); err != nil || secs < 1 {
			t.Errorf("t0+%v: Retry-After %q, want whole seconds >= 1", clk.Now().Sub(t0), hdr.Get("Retry-After"))
		}
	}
}

func TestInject(t *testing.T) {
	srv, _ := newServer(t)
	srv.Inject(
		Fault{Status: 503, RetryAfter: "2", Body: "down"},
		Fault{Status: 429, RetryAfter: "7", Body: `{"error":"slow down"}`, Times: 2},
		Fault{Body: "no status means 503"},
		Fault{Status: 400, Body: "poison"},
		Fault{Status: 500, Times: -1}, // Times <= 0 means once
	)
	tests := []struct {
		status     int // 0: success
		retryAfter time.Duration
		body       string
		rejected   bool
	}{
		{status: 503, retryAfter: 2 * time.Second, body: "down"},
		{status: 429, retryAfter: 7 * time.Second, body: `{"error":"slow down"}`},
		{status: 429, retryAfter: 7 * time.Second, body: `{"error":"slow down"}`},
		{status: 503, body: "no status means 503"},
		{status: 400, body: "poison", rejected: true},
		{status: 500},
		{}, // normal service resumes
		{},
	}
	for i, tt := range tests {
		err := track(t, srv, "1", ev("a", fmt.Sprintf("k%d", i)))
		if tt.status == 0 {
			if err != nil {
				t.Fatalf("request %d: Track: %v, want nil", i, err)
			}
			continue
		}
		var se *httperr.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("request %d: Track: %v, want a *httperr.StatusError", i, err)
		}
		if got := [4]any{se.API, se.Status, se.RetryAfter, se.Body}; got != [4]any{"heap", tt.status, tt.retryAfter, tt.body} {
			t.Errorf("request %d: StatusError %v, want heap %d %v %q", i, got, tt.status, tt.retryAfter, tt.body)
		}
		if got := errors.Is(err, heap.ErrRejected); got != tt.rejected {
			t.Errorf("request %d: errors.Is(ErrRejected) = %v, want %v", i, got, tt.rejected)
		}
		if got := heap.Retryable(err); got == tt.rejected {
			t.Errorf("request %d: Retryable = %v, want %v", i, got, !tt.rejected)
		}
	}
	// Faults keep nothing; only the last two requests were served.
	if diff := cmp.Diff([]string{"1/k6", "1/k7"}, keysOf(srv.Accepted())); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if got := srv.Stats().Requests; got != len(tests) {
		t.Errorf("Stats().Requests = %d, want %d", got, len(tests))
	}
}

func TestInjectDelayTimesOutClient(t *testing.T) {
	srv, _ := newServer(t)
	srv.Inject(Fault{Status: 200, Delay: time.Minute})
	c := &heap.Client{Timeout: 50 * time.Millisecond}
	err := c.Track(context.Background(), srv.URL, "1", []heap.Event{ev("a", "k1")})
	if err == nil {
		t.Fatal("Track against a delayed answer: err = nil, want a timeout")
	}
	if !heap.Retryable(err) || errors.Is(err, heap.ErrRejected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Track: %v; want a retryable deadline error, not a rejection", err)
	}
	if err := track(t, srv, "1", ev("a", "k1")); err != nil {
		t.Fatalf("Track after the fault: %v", err)
	}
	if diff := cmp.Diff([]string{"1/k1"}, keysOf(srv.Accepted())); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

func TestInjectDelayEndsWhenClientGivesUp(t *testing.T) {
	sink := NewSink()
	sink.Inject(Fault{Status: 200, Delay: time.Hour})
	srv := httptest.NewServer(sink)
	c := &heap.Client{HTTP: srv.Client(), Timeout: 50 * time.Millisecond}
	if err := c.Track(context.Background(), srv.URL, "1", []heap.Event{ev("a", "k1")}); !heap.Retryable(err) {
		t.Fatalf("Track against an hour's delay: %v, want a retryable error", err)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }() // Close waits for the delayed handler
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the delayed handler still runs 30s after its client gave up")
	}
}

func TestInjectMalformedSuccess(t *testing.T) {
	srv, _ := newServer(t)
	srv.Inject(
		Fault{Status: 200, Body: "{oops"},
		Fault{Status: 202, Body: "<html>accepted</html>"},
		Fault{Status: 204},
	)
	for i := range 3 {
		if err := track(t, srv, "1", ev("a", fmt.Sprintf("k%d", i))); err != nil {
			t.Errorf("request %d: Track: %v, want nil", i, err)
		}
	}
	// The stand-in answered without keeping: a lost event the pipeline cannot see.
	if got := len(srv.Accepted()); got != 0 {
		t.Errorf("kept %d events under faults, want 0", got)
	}
}

func TestClearFaults(t *testing.T) {
	srv, _ := newServer(t)
	srv.Inject(Fault{Status: 503, Times: 3})
	if err := track(t, srv, "1", ev("a", "k1")); !heap.Retryable(err) {
		t.Fatalf("Track under a fault: %v, want a retryable error", err)
	}
	srv.ClearFaults()
	if err := track(t, srv, "1", ev("a", "k1")); err != nil {
		t.Fatalf("Track after ClearFaults: %v", err)
	}
}

func TestFaultFunc(t *testing.T) {
	srv, _ := newServer(t, FaultFunc(func(r Request) *Fault {
		for _, e := range r.Events {
			if e.Identity == "poison" {
				return &Fault{Status: 400, Body: "poison event"}
			}
		}
		return nil
	}))
	err := track(t, srv, "1", ev("a", "k1"), ev("poison", "k2"))
	if !errors.Is(err, heap.ErrRejected) {
		t.Fatalf("Track with a poison event: %v, want ErrRejected", err)
	}
	if err := track(t, srv, "1", ev("a", "k1")); err != nil {
		t.Fatalf("Track without the poison event: %v", err)
	}
	if diff := cmp.Diff(Stats{Requests: 2, Accepted: 1, Rejected: 1}, srv.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestOnAccept(t *testing.T) {
	type call struct {
		App  string
		Keys []string
	}
	var mu sync.Mutex
	var calls []call
	srv, _ := newServer(t,
		WithLimits(Limits{PerIdentity: 3, Window: time.Minute}),
		OnAccept(func(app string, evs []Event) {
			c := call{App: app}
			for _, e := range evs {
				c.Keys = append(c.Keys, e.IdempotencyKey)
			}
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
		}))
	steps := []struct {
		app     string
		evs     []heap.Event
		wantErr bool
	}{
		{"1", []heap.Event{ev("a", "k1"), ev("b", "k2")}, false},
		{"1", []heap.Event{ev("a", "k2"), ev("c", "k3")}, false}, // k2 is a duplicate
		{"1", []heap.Event{ev("c", "k3")}, false},                // all duplicates: no call
		{"2", []heap.Event{ev("a", "k1")}, false},                // another app
		{"1", []heap.Event{ev("", "k9")}, true},                  // rejected: no call
		{"1", []heap.Event{ev("a", "k8"), ev("a", "k9")}, true},  // over a's budget: no call
	}
	for i, st := range steps {
		if err := track(t, srv, st.app, st.evs...); (err != nil) != st.wantErr {
			t.Fatalf("step %d: Track: %v, want error %v", i, err, st.wantErr)
		}
	}
	want := []call{{"1", []string{"k1", "k2"}}, {"1", []string{"k3"}}, {"2", []string{"k1"}}}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("OnAccept calls (-want +got):\n%s", diff)
	}
}

func TestConcurrentRequests(t *testing.T) {
	const (
		workers  = 16
		requests = 20
		perReq   = 5
		apps     = 3
	)
	var notified atomic.Int64
	srv, _ := newServer(t, OnAccept(func(_ string, evs []Event) { notified.Add(int64(len(evs))) }))
	srv.Inject(Fault{Status: 503, Times: 10})
	c := newClient()
	var attempts atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() { // read and poke the stand-in while it serves
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = srv.Stats()
			_ = srv.Accepted()
			srv.Inject(Fault{Status: 500})
			time.Sleep(time.Millisecond)
		}
	})
	var workersWG sync.WaitGroup
	for w := range workers {
		workersWG.Go(func() {
			for r := range requests {
				app := fmt.Sprint(w % apps)
				evs := []heap.Event{ev("shared", "shared")} // one key every request of the app repeats
				for e := range perReq {
					evs = append(evs, ev(fmt.Sprintf("w%d", w), fmt.Sprintf("w%d-r%d-e%d", w, r, e)))
				}
				for {
					attempts.Add(1)
					err := c.Track(context.Background(), srv.URL, app, evs)
					if err == nil {
						break
					}
					if !heap.Retryable(err) {
						t.Errorf("worker %d request %d: %v", w, r, err)
						return
					}
				}
			}
		})
	}
	workersWG.Wait()
	close(done)
	wg.Wait()

	st := srv.Stats()
	wantKept := workers*requests*perReq + apps
	if st.Accepted != wantKept {
		t.Errorf("Stats().Accepted = %d, want %d", st.Accepted, wantKept)
	}
	if want := workers*requests - apps; st.Duplicates != want {
		t.Errorf("Stats().Duplicates = %d, want %d", st.Duplicates, want)
	}
	if got := int(attempts.Load()); st.Requests != got {
		t.Errorf("Stats().Requests = %d, want %d", st.Requests, got)
	}
	if got := int(notified.Load()); got != wantKept {
		t.Errorf("OnAccept saw %d events, want %d", got, wantKept)
	}
	seen := map[string]bool{}
	for _, k := range keysOf(srv.Accepted()) {
		if seen[k] {
			t.Errorf("%s kept twice", k)
		}
		seen[k] = true
	}
}
