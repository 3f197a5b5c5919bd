// Package requestid names a request on the public listener: the caller's
// X-Request-Id when it is a safe token, else a fresh random one. The id
// goes into logs and record headers, so a caller's value is kept only when
// it cannot forge a log line or carry data (1 to 64 of [A-Za-z0-9._:-]).
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Header is the header a caller may name its request with.
const Header = "X-Request-Id"

// From returns r's id: its X-Request-Id if Valid, else 16 random hex digits.
func From(r *http.Request) string {
	if id := r.Header.Get(Header); Valid(id) {
		return id
	}
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Valid reports whether id is 1 to 64 of [A-Za-z0-9._:-].
func Valid(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
