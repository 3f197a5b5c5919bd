package httperr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"seconds with spaces", " 7 ", 7 * time.Second},
		{"zero seconds", "0", 0},
		{"large seconds", "3600", time.Hour},
		{"negative seconds", "-5", 0},
		{"fractional seconds", "1.5", 0},
		{"garbage", "soon", 0},
		{"http-date in the future", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"rfc850 date in the future", now.Add(2 * time.Minute).Format(time.RFC850), 2 * time.Minute},
		{"ansi c date in the future", now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second},
		{"http-date now", now.Format(http.TimeFormat), 0},
		{"http-date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"malformed date", "Thu, 02 Jan 2025 99:04:05 GMT", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.in, now); got != tt.want {
				t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

var (
	errGone    = Permanent("gone")
	errRefused = Permanent("refused")
)

// TestClassification: the class a client gives an answer is what errors.Is
// finds and what Retryable reads; the wait is the answer's, wrapped or not.
func TestClassification(t *testing.T) {
	se := func(status int, class error) error {
		return fmt.Errorf("vendor call: %w", &StatusError{API: "vendor", Status: status, RetryAfter: 3 * time.Second, Class: class})
	}
	for _, c := range []struct {
		name      string
		err       error
		retryable bool
		is        error
		wait      time.Duration
	}{
		{"nil", nil, false, nil, 0},
		{"transport failure", errors.New("connection refused"), true, nil, 0},
		{"timeout", fmt.Errorf("call: %w", context.DeadlineExceeded), true, nil, 0},
		{"cancelled", fmt.Errorf("call: %w", context.Canceled), false, nil, 0},
		{"retryable answer", se(503, nil), true, nil, 3 * time.Second},
		{"permanent answer", se(404, errGone), false, errGone, 3 * time.Second},
		{"another permanent answer", se(400, errRefused), false, errRefused, 3 * time.Second},
		{"a sentinel on its own", fmt.Errorf("batch too big: %w", errRefused), false, errRefused, 0},
		{"a sentinel beside another error", fmt.Errorf("bad: %w: %w", errRefused, errors.New("x")), false, errRefused, 0},
		{"a plain sentinel", errors.New("plain"), true, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Retryable(c.err); got != c.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", c.err, got, c.retryable)
			}
			if c.is != nil && !errors.Is(c.err, c.is) {
				t.Errorf("errors.Is(%v, %v) = false", c.err, c.is)
			}
			for _, other := range []error{errGone, errRefused} {
				if other != c.is && errors.Is(c.err, other) {
					t.Errorf("errors.Is(%v, %v) = true", c.err, other)
				}
			}
			if got := Of(c.err); got != c.wait {
				t.Errorf("Of(%v) = %v, want %v", c.err, got, c.wait)
			}
		})
	}
}

func TestRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "  slow down, alice@example.com "+strings.Repeat("x", 100))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	se := Read("vendor", resp, 40)
	want := "slow down, alice@example.com " + strings.Repeat("x", 9)
	if se.API != "vendor" || se.Status != 429 || se.RetryAfter != 7*time.Second || se.Body != want || se.Class != nil {
		t.Errorf("Read = %+v, want vendor 429 7s %q", se, want)
	}
	if msg := se.Error(); !strings.HasPrefix(msg, "vendor: 429 Too Many Requests: slow down, [address] xxx") || strings.Contains(msg, "@") {
		t.Errorf("Error() = %q", msg)
	}
	if got := (&StatusError{API: "vendor", Status: 503}).Error(); got != "vendor: 503 Service Unavailable (empty body)" {
		t.Errorf("Error() of an empty answer = %q", got)
	}
}
