// Package readiness answers a process's health and readiness probes:
// /healthz (the process runs) and /readyz (its dependencies answer), the
// latter on the admin port with the failures named, on a public port
// saying only whether (StatusOnly).
package readiness

import (
	"context"
	"net/http"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
)

// Timeout bounds one round of checks.
const Timeout = 2 * time.Second

// Check is a named readiness probe.
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// Live answers 200 {"status":"ok"}: the process serves requests.
func Live(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Handler answers 200 when every check passes within Timeout, else 503
// naming the failures and their errors.
func Handler(checks []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), Timeout)
		defer cancel()
		failed := map[string]string{}
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				failed[c.Name] = err.Error()
			}
		}
		if len(failed) > 0 {
			httpjson.Write(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// StatusOnly answers as h does, without h's body: readiness on a public
// port tells whether, not why.
func StatusOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{header: http.Header{}, code: http.StatusOK}
		h(rec, r)
		status := "ready"
		if rec.code != http.StatusOK {
			status = "unavailable"
		}
		httpjson.Write(w, rec.code, map[string]string{"status": status})
	}
}

type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }
