package requestid_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/requestid"
)

func TestFrom(t *testing.T) {
	tests := []struct {
		name, header string
		kept         bool
	}{
		{"none", "", false},
		{"a token", "01J9Z6:web-1.a_b", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"65 characters", strings.Repeat("a", 65), false},
		{"a space", "a b", false},
		{"a newline forging a log line", "x\nlevel=error", false},
		{"an address", "jordan@example.com", false},
		{"non-ASCII", "é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			if tt.header != "" {
				r.Header.Set(requestid.Header, tt.header)
			}
			got := requestid.From(r)
			if tt.kept && got != tt.header {
				t.Fatalf("From = %q, want the caller's %q", got, tt.header)
			}
			if !tt.kept && (got == tt.header || len(got) != 16 || !requestid.Valid(got)) {
				t.Fatalf("From = %q, want 16 fresh hex digits", got)
			}
		})
	}
}
