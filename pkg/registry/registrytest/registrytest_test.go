package registrytest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
)

// The stand-in answers as the API documents, to raw requests.
func TestContract(t *testing.T) {
	srv := registrytest.New(t, registrytest.BasicAuth("u", "p"))
	do := func(method, path, ctype, body string, auth bool) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if auth {
			req.SetBasicAuth("u", "p")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
			t.Errorf("%s %s: content type %q", method, path, ct)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	const ct = "application/vnd.schemaregistry.v1+json"
	schema := `{"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}"}`
	tests := []struct {
		method, path, ctype, body string
		auth                      bool
		status, code              int
	}{
		{"POST", "/subjects/s-value/versions", ct, schema, false, 401, 401},
		{"POST", "/subjects/s-value/versions", "text/plain", schema, true, 415, 415},
		{"POST", "/subjects/s-value/versions", ct, `{"schema":"{"}`, true, 422, 42201},
		{"POST", "/subjects/s-value", ct, schema, true, 404, 40401},
		{"POST", "/subjects/s-value/versions", "application/json", schema, true, 200, 0},
		{"POST", "/subjects/s-value", ct, `{"schema":"\"string\""}`, true, 404, 40403},
		{"POST", "/subjects/s-value", ct, schema, true, 200, 0},
		{"GET", "/schemas/ids/1", "", "", true, 200, 0},
		{"GET", "/schemas/ids/2", "", "", true, 404, 40403},
		{"PUT", "/config/s-value", ct, `{"compatibility":"FULL_TRANSITIVE"}`, true, 200, 0},
		{"PUT", "/config", ct, `{"compatibility":"SIDEWAYS"}`, true, 422, 42203},
		{"GET", "/nosuch", "", "", true, 404, 404},
	}
	for _, tt := range tests {
		status, out := do(tt.method, tt.path, tt.ctype, tt.body, tt.auth)
		if status != tt.status {
			t.Errorf("%s %s: %d %v, want %d", tt.method, tt.path, status, out, tt.status)
			continue
		}
		if code, _ := out["error_code"].(float64); int(code) != tt.code {
			t.Errorf("%s %s: error_code %v, want %d", tt.method, tt.path, out["error_code"], tt.code)
		}
	}
	if n := srv.Requests("GET /schemas/ids/1"); n != 1 {
		t.Errorf("Requests = %d", n)
	}
}
