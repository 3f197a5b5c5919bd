package secret_test

import (
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/secret"
)

func TestEqual(t *testing.T) {
	tests := []struct {
		got, want string
		ok        bool
	}{
		{"s3cret-token-value", "s3cret-token-value", true},
		{"s3cret-token-valu", "s3cret-token-value", false},
		{"s3cret-token-value-longer", "s3cret-token-value", false},
		{"", "", false},
		{"anything", "", false},
	}
	for _, tc := range tests {
		if got := secret.Equal(tc.got, tc.want); got != tc.ok {
			t.Errorf("Equal(%q, %q) = %v", tc.got, tc.want, got)
		}
	}
}
