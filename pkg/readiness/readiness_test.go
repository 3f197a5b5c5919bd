package readiness

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func serve(h http.HandlerFunc) (int, map[string]any) {
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	return w.Code, body
}

func TestHandler(t *testing.T) {
	ok := Check{Name: "redis", Fn: func(context.Context) error { return nil }}
	bad := Check{Name: "kafka", Fn: func(context.Context) error { return errors.New("not authorized for group secret-group") }}
	for _, c := range []struct {
		name   string
		h      http.HandlerFunc
		status int
		body   map[string]any
	}{
		{"no checks", Handler(nil), 200, map[string]any{"status": "ready"}},
		{"passing", Handler([]Check{ok}), 200, map[string]any{"status": "ready"}},
		{"failing", Handler([]Check{ok, bad}), 503,
			map[string]any{"status": "unavailable", "failed": map[string]any{"kafka": "not authorized for group secret-group"}}},
		{"failing, status only", StatusOnly(Handler([]Check{ok, bad})), 503, map[string]any{"status": "unavailable"}},
		{"passing, status only", StatusOnly(Handler([]Check{ok})), 200, map[string]any{"status": "ready"}},
		{"live", Live, 200, map[string]any{"status": "ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := serve(c.h)
			if status != c.status {
				t.Errorf("status %d, want %d", status, c.status)
			}
			if diff := cmp.Diff(c.body, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChecksBounded(t *testing.T) {
	var left time.Duration
	probe := Check{Name: "probe", Fn: func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok {
			return errors.New("no deadline")
		}
		left = time.Until(d)
		return nil
	}}
	if status, body := serve(Handler([]Check{probe})); status != 200 || left <= 0 || left > Timeout {
		t.Errorf("%d %v, checks given %v; want 200 and at most %v", status, body, left, Timeout)
	}
}
