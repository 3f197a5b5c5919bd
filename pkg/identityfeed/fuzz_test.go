package identityfeed_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
)

// FuzzFeed feeds arbitrary bodies to the handler (no forwarding): it never
// panics, answers 200, 400, 403 or 413, records only on 200 and only valid
// mappings.
func FuzzFeed(f *testing.F) {
	for _, seed := range []string{
		single("app1", "u1", email("a@example.com")),
		bulk("app1", user("u1", email("a@example.com")), user("u2", nil)),
		`{"app_id":"app1","users":[]}`,
		`{"app_id":"app1","identity":" x","properties":{"email":7}}`,
		`{"app_id":"app2","identity":"x","properties":{}}`,
		`{"app_id":"app1","users":[{"identity":null}]}`,
		`[]`, `null`, `{"app_id":"app1"} {}`,
		`{"app_id":"app2","App_Id":"app1","identity":"u1","properties":{"email":"a@example.com"}}`,
		`{"app_id":"app1","identity":"u1","properties":{"email":"a@example.com","email":"b@example.com"}}`,
		`{"app_id":"app1","users":[{"identity":"u1","properties":{"a":{"x":1,"X":2}}}]}`,
	} {
		f.Add(seed)
	}
	sources := testSources(f)
	f.Fuzz(func(t *testing.T, body string) {
		pub := &memPublisher{}
		h := identityfeed.NewHandler(identityfeed.Config{Sources: sources, Topic: "heap.identities"}, pub)
		req := httptest.NewRequest(http.MethodPost, identityfeed.Path, strings.NewReader(body))
		req.Header.Set("Authorization", bearer(tokAcme))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			if len(pub.recs) > 0 {
				t.Fatalf("%d: %d records published", rec.Code, len(pub.recs))
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		for _, r := range pub.recs {
			if _, err := identity.Decode(r.Value); err != nil {
				t.Fatalf("published an invalid mapping: %v", err)
			}
		}
	})
}

// roundTripFunc answers a request without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzFeedForward feeds arbitrary bodies to a forwarding source (app2):
// Heap is called only on 200, once, with a body in Heap's own spelling
// whose app_id is the token's app, whatever keys the caller repeated or
// cased differently.
func FuzzFeedForward(f *testing.F) {
	for _, seed := range []string{
		single("app2", "F1", email("f1@example.com")),
		bulk("app2", user("F1", email("f1@example.com")), user("F2", map[string]any{"plan": "free"})),
		`{"app_id":"app1","App_Id":"app2","identity":"F1","properties":{"email":"f1@example.com"}}`,
		`{"app_id":"app1","app_id":"app2","identity":"F1","properties":{"email":"f1@example.com"}}`,
		`{"APP_ID":"app2","Identity":"F1","PROPERTIES":{"email":"f1@example.com","n":1.50},"x":{"y":1}}`,
		`{"app_id":"app2","users":[{"identity":"F1","properties":{"email":"a@example.com","Email":"b@example.com"}}]}`,
	} {
		f.Add(seed)
	}
	sources := testSources(f)
	f.Fuzz(func(t *testing.T, body string) {
		var forwarded [][]byte
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(r.Body)
			forwarded = append(forwarded, b)
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}, nil
		})}
		h := identityfeed.NewHandler(identityfeed.Config{Sources: sources, Topic: "heap.identities",
			HeapURL: "http://heap.invalid", Heap: &heap.Client{HTTP: hc}}, &memPublisher{})
		req := httptest.NewRequest(http.MethodPost, identityfeed.Path, strings.NewReader(body))
		req.Header.Set("Authorization", bearer(tokFwd))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if len(forwarded) != 1 {
				t.Fatalf("200 after %d Heap calls, want 1", len(forwarded))
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			if len(forwarded) != 0 {
				t.Fatalf("%d after %d Heap calls, want none", rec.Code, len(forwarded))
			}
			return
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(forwarded[0], &got); err != nil {
			t.Fatalf("forwarded %s: %v", forwarded[0], err)
		}
		for k := range got {
			if k != "app_id" && k != "identity" && k != "properties" && k != "users" {
				t.Fatalf("forwarded key %q: %s", k, forwarded[0])
			}
		}
		if string(got["app_id"]) != `"app2"` {
			t.Fatalf("forwarded to app %s, not the token's: %s", got["app_id"], forwarded[0])
		}
	})
}
