// Package httperr is how the vendors' clients (Heap, Mailchimp) classify
// an HTTP answer: the wait its Retry-After header asks for (Parse), the
// StatusError a non-2xx answer becomes, and whether trying again may help
// (Retryable, Of). Each vendor keeps its own sentinel errors, made with
// Permanent when no later try can help, and sets them as an answer's Class.
package httperr

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
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

// StatusError is a vendor's non-2xx answer. The answer may quote the request
// (an email address, a property value) and errors end up in logs, dead-letter
// reasons and status pages, so Error shows it redacted and cut short, with a
// digest of the whole: `heap: 400 Bad Request: {"error":"identity [address]
// blocked"} (body sha256:1a2b3c4d, 182 bytes)`.
type StatusError struct {
	API        string // who answered, the error's prefix: "heap", "mailchimp"
	Status     int
	RetryAfter time.Duration // zero when the answer asked for none
	// Body is the answer, trimmed and bounded, for code that inspects it.
	// It may quote the request: log or store Error, never Body.
	Body string
	// Class is the vendor's sentinel for this answer, which errors.Is finds
	// (heap.ErrRejected, mailchimp.ErrNotFound ...); one made with Permanent
	// makes the error not Retryable. Nil: a later try may succeed.
	Class error
}

// Read makes resp's non-2xx answer a StatusError of api, reading at most
// limit bytes of its body. The caller classifies it (Class).
func Read(api string, resp *http.Response, limit int64) *StatusError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	return &StatusError{
		API:        api,
		Status:     resp.StatusCode,
		RetryAfter: Parse(resp.Header.Get("Retry-After"), time.Now()),
		Body:       strings.TrimSpace(string(body)),
	}
}

// Error is the status, and the answer redacted and cut short (operators
// select dead letters by its words), the digest of the whole redacted answer
// (the same refusal, whoever it quoted, has the same one, however long) and
// the answer's size.
func (e *StatusError) Error() string {
	s := e.API + ": " + strconv.Itoa(e.Status)
	if text := http.StatusText(e.Status); text != "" {
		s += " " + text
	}
	if e.Body == "" {
		return s + " (empty body)"
	}
	redacted := RedactAddresses(e.Body)
	sum := sha256.Sum256([]byte(redacted))
	return fmt.Sprintf("%s: %s (body sha256:%x, %d bytes)", s, oneLine(redacted), sum[:4], len(e.Body))
}

// Unwrap is the answer's Class: errors.Is(err, class) holds.
func (e *StatusError) Unwrap() error { return e.Class }

// Permanent returns a new sentinel error for outcomes no later try can
// change: Retryable is false for every error that is or wraps it.
func Permanent(text string) error { return &permanent{text} }

type permanent struct{ text string }

func (p *permanent) Error() string { return p.text }

// Retryable reports whether err may succeed on a later try: 429, 5xx,
// timeouts and transport failures, everything but a Permanent class.
// Neither nil nor the cancellation of a context is retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var p *permanent
	return !errors.As(err, &p)
}

// Of returns the wait err's answer asked for (Retry-After), if any.
func Of(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}
