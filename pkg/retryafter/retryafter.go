// Package retryafter reads an HTTP Retry-After header, as both Heap and
// Mailchimp may send it.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Parse returns the wait v asks for: delay-seconds or an HTTP date (RFC
// 9110). Empty, malformed, negative or past values ask for none.
func Parse(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
