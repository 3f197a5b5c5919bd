// Package secret compares presented credentials (webhook secrets, bearer
// tokens) with the configured ones without revealing either's content or
// length through timing: both are hashed, then compared in constant time.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Equal reports whether got is want. An empty want never matches.
func Equal(got, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
