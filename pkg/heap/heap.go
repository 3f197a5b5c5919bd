// Package heap is a client for Heap's server-side Track API (docs/ARCHITECTURE.md §7).
package heap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
)

// Documented limits of the Track API.
const (
	MaxBatch          = 1000
	MaxIdentityLen    = 255
	MaxEventNameLen   = 1024
	MaxValueLen       = 1023 // values and keys must stay under 1024 characters
	AppEventsPerMin   = 15000
	IdentityPerMin    = 1000
	TrackPath         = "/api/track"
	TimestampLayout   = "2006-01-02T15:04:05.000Z07:00"
	maxErrorBodyBytes = 4096
)

// Event is one event of a bulk track request. Client.Track encodes it
// (AppendEvent); so does json.Marshal.
type Event struct {
	Identity  string
	Event     string
	Timestamp string // AppendTimestamp's; empty: Heap takes the time it receives the event
	// Properties are sent as the event's "properties" object, in strictly
	// increasing key order: the order encoding/json gives a map's keys, so
	// the body is what it would write for them (AppendEvent refuses others).
	Properties     []Property
	IdempotencyKey string
}

// Property is one string property.
type Property struct{ Key, Value string }

// MarshalJSON is AppendEvent's encoding.
func (e Event) MarshalJSON() ([]byte, error) { return AppendEvent(nil, e) }

// AppendTimestamp appends t as Heap's ISO 8601 timestamp to b. It writes
// the digits itself for years 0-9999, where time.Format showed in the
// emitter's profile (BENCHMARKS.md).
func AppendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimestampLayout)
	}
	hour, minute, sec := t.Clock()
	i := len(b)
	b = append(b, "0000-00-00T00:00:00.000Z"...)
	put := func(at, v, width int) {
		for j := i + at + width - 1; j >= i+at; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	put(5, int(month), 2)
	put(8, day, 2)
	put(11, hour, 2)
	put(14, minute, 2)
	put(17, sec, 2)
	put(20, t.Nanosecond()/1e6, 3)
	return b
}

// Truncate cuts s to the longest prefix under Heap's 1024-character limit,
// on a rune boundary: Heap rejects long values, the pipeline never does.
func Truncate(s string) string {
	if len(s) <= MaxValueLen || utf8.RuneCountInString(s) <= MaxValueLen {
		return s
	}
	n := 0
	for i := range s {
		if n == MaxValueLen {
			return s[:i]
		}
		n++
	}
	return s
}

// ErrRejected marks an answer that retrying the same batch cannot change
// (400 and other 4xx but 408 and 429), or a batch Track refuses to send (over
// MaxBatch, or not encodable): split the batch to isolate the bad event.
// Heap's answers are *httperr.StatusError, their Class ErrRejected when
// permanent.
var ErrRejected = httperr.Permanent("heap rejected the request")

// Retryable reports whether err may succeed on a later try: 429, 5xx,
// timeouts and transport failures. Cancellation of ctx is not retryable.
func Retryable(err error) bool { return httperr.Retryable(err) }

// RetryAfter returns the wait Heap asked for, if any.
func RetryAfter(err error) time.Duration { return httperr.Of(err) }

// Answer is the error Client returns for Heap's answer of status (with its
// Retry-After wait and body): what fakes of Heap answer with.
func Answer(status int, retryAfter time.Duration, body string) error {
	return classify(&httperr.StatusError{API: "heap", Status: status, RetryAfter: retryAfter, Body: body})
}

// classify is Heap's answer with its Class: ErrRejected for 4xx but 408 and
// 429, which retrying the same request cannot change.
func classify(se *httperr.StatusError) *httperr.StatusError {
	if se.Status >= 400 && se.Status < 500 && se.Status != http.StatusTooManyRequests && se.Status != http.StatusRequestTimeout {
		se.Class = ErrRejected
	}
	return se
}

// defaultHTTP keeps a connection per concurrent sender alive: the emitter
// sends one request per app at a time, all to one Heap host, and
// http.DefaultTransport keeps two idle connections per host, so every
// other request opened a new one (a TLS handshake to Heap; against a busy
// stand-in, seconds waiting on a full accept backlog).
var defaultHTTP = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t}
}()

// Client posts to the Track and add_user_properties APIs. The zero value
// uses a shared client that keeps a connection per concurrent request alive.
type Client struct {
	HTTP *http.Client
	// Timeout bounds each request; zero means no bound beyond ctx.
	Timeout time.Duration
}

// Track sends one bulk request of at most MaxBatch events to baseURL.
func (c *Client) Track(ctx context.Context, baseURL, appID string, evs []Event) error {
	if err := checkBatch(appID, len(evs)); err != nil || len(evs) == 0 {
		return err
	}
	buf := newBodyBuf()
	defer buf.release() // after send: a redirect or retry takes a new reader (GetBody) until then
	var err error
	if buf.b, err = appendTrackRequest(slices.Grow(buf.b[:0], trackRequestSize(appID, evs)), appID, evs); err != nil {
		return fmt.Errorf("heap track app %s: %w: %w", appID, ErrRejected, err)
	}
	return c.send(ctx, baseURL, TrackPath, "track", appID, buf)
}

// TrackEncoded is Track for events encoded ahead, each as AppendEvent wrote
// it: the emitter encodes a request's events into one reused buffer when it
// prepares the request, and this copies them into the body as they are.
func (c *Client) TrackEncoded(ctx context.Context, baseURL, appID string, evs [][]byte) error {
	if err := checkBatch(appID, len(evs)); err != nil || len(evs) == 0 {
		return err
	}
	buf := newBodyBuf()
	defer buf.release()
	buf.b = appendEncodedRequest(slices.Grow(buf.b[:0], encodedRequestSize(appID, evs)), appID, evs)
	return c.send(ctx, baseURL, TrackPath, "track", appID, buf)
}

// checkBatch refuses a batch of n events over MaxBatch.
func checkBatch(appID string, n int) error {
	if n > MaxBatch {
		return fmt.Errorf("heap track app %s: %d events over the %d limit: %w", appID, n, MaxBatch, ErrRejected)
	}
	return nil
}

// send posts buf to baseURL+path, the one way every request goes to Heap:
// bounded by Timeout, buf reused only once the transport is done with it,
// a non-2xx answer a classified *httperr.StatusError. op and appID
// label errors.
func (c *Client) send(ctx context.Context, baseURL, path, op, appID string, buf *bodyBuf) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	body := buf.reader()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+path, body)
	if err != nil {
		body.Close()
		return fmt.Errorf("heap %s app %s: %w", op, appID, err)
	}
	req.ContentLength = int64(len(buf.b))
	req.GetBody = func() (io.ReadCloser, error) { return buf.reader(), nil }
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("heap %s app %s: %w", op, appID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes)) // the connection is kept for the next request
		return nil
	}
	return fmt.Errorf("heap %s app %s: %w", op, appID, classify(httperr.Read("heap", resp, maxErrorBodyBytes)))
}

// bodyBuf is a request body's bytes, reused once send and every reader of
// them are done: the transport may still be reading (or, over HTTP/2,
// cancelling) a body after Do returned.
type bodyBuf struct {
	b    []byte
	refs atomic.Int32
}

var bodyBufs = sync.Pool{New: func() any { return new(bodyBuf) }}

// newBodyBuf returns a buffer its caller holds one reference to.
func newBodyBuf() *bodyBuf {
	buf := bodyBufs.Get().(*bodyBuf)
	buf.refs.Store(1)
	return buf
}

func (buf *bodyBuf) release() {
	if buf.refs.Add(-1) == 0 && cap(buf.b) <= 4<<20 { // a rare huge body is not kept
		bodyBufs.Put(buf)
	}
}

// reader returns a new body over buf, holding a reference until closed.
func (buf *bodyBuf) reader() *body {
	buf.refs.Add(1)
	b := &body{buf: buf}
	b.r.Reset(buf.b)
	return b
}

// body is one reader of a request's bytes. HTTP/2 may close it while
// another goroutine reads it: the lock keeps a read off a buffer given back.
type body struct {
	mu     sync.Mutex
	buf    *bodyBuf
	r      bytes.Reader
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	return b.r.Read(p)
}

// Close lets the bytes go, once however often it is called.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.r.Reset(nil)
		b.buf.release()
	}
	return nil
}

// add_user_properties (docs/ARCHITECTURE.md §7.3): single {app_id, identity, properties}
// or bulk {app_id, users: [{identity, properties}]} of at most MaxBatch users,
// 30 requests per 30 s per identity.
const (
	UserPropertiesPath         = "/api/add_user_properties"
	UserPropertiesPerIdentity  = 30
	UserPropertiesWindow       = 30 * time.Second
	maxUserPropertiesBodyBytes = 64 << 20
)

// UserProperties is one user of an add_user_properties request.
type UserProperties struct {
	Identity   string         `json:"identity"`
	Properties map[string]any `json:"properties"`
}

// UserPropertiesRequest is the bulk add_user_properties body.
type UserPropertiesRequest struct {
	AppID string           `json:"app_id"`
	Users []UserProperties `json:"users"`
}

// AddUserProperties posts body, a complete add_user_properties request in
// either shape, to baseURL unchanged: the identity feed forwards the request
// it validated, encoded again. appID only labels errors. Errors are
// classified as Track's: a *httperr.StatusError, ErrRejected for 4xx but
// 408 and 429, Retryable for the rest, RetryAfter for Heap's wait.
func (c *Client) AddUserProperties(ctx context.Context, baseURL, appID string, body []byte) error {
	if len(body) > maxUserPropertiesBodyBytes {
		return fmt.Errorf("heap add_user_properties app %s: body of %d bytes: %w", appID, len(body), ErrRejected)
	}
	if !json.Valid(body) {
		return fmt.Errorf("heap add_user_properties app %s: body is not JSON: %w", appID, ErrRejected)
	}
	buf := newBodyBuf()
	defer buf.release()
	buf.b = append(buf.b[:0], body...)
	return c.send(ctx, baseURL, UserPropertiesPath, "add_user_properties", appID, buf)
}
