package identityfeed_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
