package heaptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
)

func addUserProperties(t *testing.T, srv *Server, body string) error {
	t.Helper()
	return newClient().AddUserProperties(context.Background(), srv.URL, "app1", []byte(body))
}

func bulkUsers(n int, identity func(i int) string) string {
	users := make([]map[string]any, n)
	for i := range users {
		users[i] = map[string]any{"identity": identity(i), "properties": map[string]any{"email": fmt.Sprintf("u%d@example.com", i)}}
	}
	b, _ := json.Marshal(map[string]any{"app_id": "app1", "users": users})
	return string(b)
}

func TestUserPropertiesAccepted(t *testing.T) {
	srv, _ := newServer(t)
	if err := addUserProperties(t, srv, `{"app_id":"app1","identity":"User-1","properties":{"email":"a@example.com","plan":"pro","seats":3}}`); err != nil {
		t.Fatalf("single: %v", err)
	}
	if err := addUserProperties(t, srv, `{"app_id":"app1","users":[{"identity":"u2","properties":{"email":"b@example.com"}},{"identity":"u3","properties":{}}]}`); err != nil {
		t.Fatalf("bulk: %v", err)
	}
	got := srv.AcceptedUsers()
	want := []AcceptedUser{
		{AppID: "app1", UserProperties: heap.UserProperties{Identity: "User-1", Properties: map[string]any{"email": "a@example.com", "plan": "pro", "seats": json.Number("3")}}, ReceivedAt: t0},
		{AppID: "app1", UserProperties: heap.UserProperties{Identity: "u2", Properties: map[string]any{"email": "b@example.com"}}, ReceivedAt: t0},
		{AppID: "app1", UserProperties: heap.UserProperties{Identity: "u3", Properties: map[string]any{}}, ReceivedAt: t0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accepted users (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(UserStats{Requests: 2, Accepted: 3}, srv.UserStats()); diff != "" {
		t.Errorf("user stats (-want +got):\n%s", diff)
	}
	// Track's counters are separate.
	if diff := cmp.Diff(Stats{}, srv.Stats()); diff != "" {
		t.Errorf("track stats (-want +got):\n%s", diff)
	}
}

func TestUserPropertiesValidation(t *testing.T) {
	long := strings.Repeat("é", heap.MaxIdentityLen+1)
	for _, tc := range []struct {
		name, body, want string // want: part of the 400 reason; "" means accepted
	}{
		{"not JSON", `{"app_id":`, "invalid JSON"},
		{"no app_id", `{"identity":"u","properties":{}}`, "app_id is required"},
		{"no identity", `{"app_id":"app1","properties":{}}`, "identity is required"},
		{"empty identity", `{"app_id":"app1","identity":"","properties":{}}`, "identity is required"},
		{"identity of 255 characters", `{"app_id":"app1","identity":"` + strings.Repeat("é", heap.MaxIdentityLen) + `","properties":{}}`, ""},
		{"identity of 256 characters", `{"app_id":"app1","identity":"` + long + `","properties":{}}`, "identity longer than 255"},
		{"no properties", `{"app_id":"app1","identity":"u"}`, "properties is required"},
		{"boolean value", `{"app_id":"app1","identity":"u","properties":{"vip":true}}`, "must be a string or a number, got bool"},
		{"value of 1023 characters", `{"app_id":"app1","identity":"u","properties":{"k":"` + strings.Repeat("x", 1023) + `"}}`, ""},
		{"value of 1024 characters", `{"app_id":"app1","identity":"u","properties":{"k":"` + strings.Repeat("x", 1024) + `"}}`, "value of 1024 characters, limit 1023"},
		{"key of 1024 characters", `{"app_id":"app1","identity":"u","properties":{"` + strings.Repeat("k", 1024) + `":"v"}}`, "property key"},
		{"both shapes", `{"app_id":"app1","identity":"u","properties":{},"users":[{"identity":"v","properties":{}}]}`, "not both"},
		{"empty users", `{"app_id":"app1","users":[]}`, "users must not be empty"},
		{"bulk user without identity", `{"app_id":"app1","users":[{"identity":"v","properties":{}},{"properties":{}}]}`, "users[1]: identity is required"},
		{"1000 users", bulkUsers(1000, func(i int) string { return fmt.Sprint("u", i) }), ""},
		{"1001 users", bulkUsers(1001, func(i int) string { return fmt.Sprint("u", i) }), "at most 1000 users per request, got 1001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t)
			status, _, body := send(t, http.MethodPost, srv.URL+heap.UserPropertiesPath, tc.body)
			if tc.want == "" {
				if status != http.StatusOK {
					t.Fatalf("status %d (%s), want 200", status, body)
				}
				return
			}
			if status != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want 400 containing %q", status, body, tc.want)
			}
			if n := len(srv.AcceptedUsers()); n != 0 {
				t.Errorf("%d users kept from a rejected request", n)
			}
			if got := srv.UserStats().Rejected; got != 1 {
				t.Errorf("rejected = %d, want 1", got)
			}
		})
	}
}

func TestUserPropertiesMethod(t *testing.T) {
	srv, _ := newServer(t)
	status, hdr, _ := send(t, http.MethodGet, srv.URL+heap.UserPropertiesPath, "")
	if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d Allow=%q, want 405 Allow=POST", status, hdr.Get("Allow"))
	}
}

func TestUserPropertiesRateLimit(t *testing.T) {
	srv, clk := newServer(t)
	single := func(identity string) string {
		return fmt.Sprintf(`{"app_id":"app1","identity":%q,"properties":{"n":1}}`, identity)
	}
	// 30 requests per 30 s per identity, spread over 29 s.
	for i := range heap.UserPropertiesPerIdentity {
		if err := addUserProperties(t, srv, single("alice")); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if i == 0 {
			clk.Advance(10 * time.Second)
		}
	}
	err := addUserProperties(t, srv, single("alice"))
	if !heap.Retryable(err) || errors.Is(err, heap.ErrRejected) {
		t.Fatalf("31st request: %v, want a retryable refusal", err)
	}
	var se *httperr.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests {
		t.Fatalf("31st request: %v, want 429", err)
	}
	// The first request leaves the window 30 s after it was made: 20 s from now.
	if got := heap.RetryAfter(err); got != 20*time.Second {
		t.Errorf("Retry-After %s, want 20s", got)
	}
	// Other identities have their own budget; a bulk request that includes a
	// throttled identity is refused whole.
	if err := addUserProperties(t, srv, single("bob")); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if err := addUserProperties(t, srv, `{"app_id":"app1","users":[{"identity":"carol","properties":{}},{"identity":"alice","properties":{}}]}`); err == nil {
		t.Fatal("bulk with alice: accepted, want 429")
	}
	clk.Advance(20 * time.Second)
	if err := addUserProperties(t, srv, single("alice")); err != nil {
		t.Fatalf("after the window moved: %v", err)
	}
	st := srv.UserStats()
	if st.Throttled != 2 || st.Accepted != heap.UserPropertiesPerIdentity+2 {
		t.Errorf("stats %+v, want 2 throttled and %d accepted", st, heap.UserPropertiesPerIdentity+2)
	}
	for _, u := range srv.AcceptedUsers() {
		if u.Identity == "carol" {
			t.Error("carol kept from a refused bulk request")
		}
	}
}

func TestUserPropertiesLimitsDisabled(t *testing.T) {
	srv, _ := newServer(t, WithLimits(Limits{}))
	for i := range heap.UserPropertiesPerIdentity + 5 {
		if err := addUserProperties(t, srv, `{"app_id":"app1","identity":"alice","properties":{}}`); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
}

func TestUserPropertiesFaults(t *testing.T) {
	srv, _ := newServer(t, UserFaultFunc(func(req heap.UserPropertiesRequest) *Fault {
		if req.Users[0].Identity == "poison" {
			return &Fault{Status: http.StatusBadRequest, Body: `{"error":"poison"}`}
		}
		return nil
	}))
	srv.Inject(Fault{Status: http.StatusServiceUnavailable}, Fault{Status: http.StatusTooManyRequests, RetryAfter: "7"})
	body := `{"app_id":"app1","identity":"u","properties":{}}`

	err := addUserProperties(t, srv, body)
	if !heap.Retryable(err) {
		t.Fatalf("injected 503: %v, want retryable", err)
	}
	err = addUserProperties(t, srv, body)
	if !heap.Retryable(err) || heap.RetryAfter(err) != 7*time.Second {
		t.Fatalf("injected 429: %v (retry after %s), want retryable after 7s", err, heap.RetryAfter(err))
	}
	if err := addUserProperties(t, srv, body); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
	err = addUserProperties(t, srv, `{"app_id":"app1","identity":"poison","properties":{}}`)
	var se *httperr.StatusError
	if !errors.Is(err, heap.ErrRejected) || heap.Retryable(err) || !errors.As(err, &se) || se.Body != `{"error":"poison"}` {
		t.Fatalf("poison: %v, want a permanent 400 with Heap's body", err)
	}
	// A 400 from the stand-in's own validation is classified the same way.
	if err := addUserProperties(t, srv, `{"app_id":"app1"}`); !errors.Is(err, heap.ErrRejected) {
		t.Fatalf("invalid body: %v, want ErrRejected", err)
	}
	if diff := cmp.Diff(UserStats{Requests: 5, Accepted: 1, Rejected: 2}, srv.UserStats()); diff != "" {
		t.Errorf("user stats (-want +got):\n%s", diff)
	}
}

func TestAddUserPropertiesRefusesNonJSON(t *testing.T) {
	srv, _ := newServer(t)
	if err := addUserProperties(t, srv, `{"app_id":`); !errors.Is(err, heap.ErrRejected) {
		t.Fatalf("got %v, want ErrRejected before sending", err)
	}
	if got := srv.UserStats().Requests; got != 0 {
		t.Errorf("%d requests reached the stand-in", got)
	}
}

func TestAddUserPropertiesTimeoutRetryable(t *testing.T) {
	srv, _ := newServer(t)
	srv.Inject(Fault{Status: http.StatusOK, Delay: time.Minute})
	c := &heap.Client{Timeout: 50 * time.Millisecond}
	err := c.AddUserProperties(context.Background(), srv.URL, "app1", []byte(`{"app_id":"app1","identity":"u","properties":{}}`))
	if err == nil || !heap.Retryable(err) {
		t.Fatalf("got %v, want a retryable timeout", err)
	}
}
