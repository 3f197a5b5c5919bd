package identityfeed

import (
	"strings"
	"testing"
)

// TestChecksRefuseControlCharacters: what the feed records reaches Heap as
// an identity or a join key, so control characters and invalid UTF-8 are
// refused there as they are in webhooks, with reasons that quote nothing.
func TestChecksRefuseControlCharacters(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		bad         bool
	}{
		{"plain", "jordan.lee@example.com", false},
		{"control", "jordan\x01lee@example.com", true},
		{"DEL", "jordan\x7flee@example.com", true},
		{"invalid UTF-8", "jordan\xfflee@example.com", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason := checkIdentity(tc.value)
			_, emailReason := checkEmail(tc.value, "email")
			for _, r := range []string{reason, emailReason} {
				if (r != "") != tc.bad {
					t.Errorf("reason %q", r)
				}
				if strings.Contains(r, "example.com") {
					t.Errorf("reason %q quotes the address", r)
				}
			}
		})
	}
}
