// Package heap is a client for Heap's server-side Track API (DESIGN.md §3).
package heap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/retryafter"
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

// Event is one event of a bulk track request.
type Event struct {
	Identity       string         `json:"identity"`
	Event          string         `json:"event"`
	Timestamp      string         `json:"timestamp,omitempty"`
	Properties     map[string]any `json:"properties,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	// Props are string properties in key order, sent as "properties" when
	// Properties is empty: what the emitter builds for every event, without
	// a map and an interface value a property. Only Client.Track writes
	// them (encoding/json does not); PropertyMap reads both.
	Props []Property `json:"-"`
	// JSON, when set, is the whole event as AppendEvent wrote it, and what
	// Client.Track sends: the emitter encodes a request's events into one
	// reused buffer when it prepares the request.
	JSON []byte `json:"-"`
}

// Property is one string property.
type Property struct{ Key, Value string }

// PropertyMap is the event's properties as one map: Properties, or Props.
func (e Event) PropertyMap() map[string]any {
	if len(e.Properties) > 0 || len(e.Props) == 0 {
		return e.Properties
	}
	m := make(map[string]any, len(e.Props))
	for _, p := range e.Props {
		m[p.Key] = p.Value
	}
	return m
}

// TrackRequest is the bulk track body.
type TrackRequest struct {
	AppID  string  `json:"app_id"`
	Events []Event `json:"events"`
}

// AppendTimestamp appends t as Heap's ISO 8601 timestamp to b. It writes
// the digits itself for years 0-9999: Format was 4% of the emitter's CPU.
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

// StatusError is a non-2xx answer from Heap. Heap's answers may quote the
// request (an identity that is an email address, a property value), and
// errors end up in logs and dead-letter reasons, so Error shows the answer
// redacted and cut short, with a digest of the whole.
type StatusError struct {
	Status     int
	RetryAfter time.Duration // zero when Heap sent none
	// Body is Heap's answer, trimmed, at most 4 KiB, for code that inspects
	// it. It may quote the request: log or store Error, never Body.
	Body string
}

// Error is `heap: 400 Bad Request: {"error":"identity [address] blocked"}
// (body sha256:1a2b3c4d, 182 bytes)`: the answer redacted and cut short
// (operators select dead letters by its words), the digest of the whole
// redacted answer (the same refusal, whoever it quoted, has the same one,
// however long) and the answer's size.
func (e *StatusError) Error() string {
	s := "heap: " + strconv.Itoa(e.Status)
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

// ErrRejected marks an answer that retrying the same batch cannot change
// (400 and other 4xx but 408 and 429), or a batch Track refuses to send (over
// MaxBatch, or not encodable as JSON): split the batch to isolate the bad event.
var ErrRejected = errors.New("heap rejected the request")

// Is makes errors.Is(err, ErrRejected) true for permanent status errors.
func (e *StatusError) Is(target error) bool {
	return target == ErrRejected && e.Status >= 400 && e.Status < 500 &&
		e.Status != http.StatusTooManyRequests && e.Status != http.StatusRequestTimeout
}

// Retryable reports whether err may succeed on a later try: 429, 5xx,
// timeouts and transport failures. Cancellation of ctx is not retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrRejected) {
		return false
	}
	return true
}

// RetryAfter returns the wait Heap asked for, if any.
func RetryAfter(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
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
	if len(evs) == 0 {
		return nil
	}
	if len(evs) > MaxBatch {
		return fmt.Errorf("heap track app %s: %d events over the %d limit: %w", appID, len(evs), MaxBatch, ErrRejected)
	}
	buf := newBodyBuf()
	defer buf.release() // after Do: a redirect or retry takes a new reader (GetBody) until then
	var err error
	if buf.b, err = appendTrackRequest(slices.Grow(buf.b[:0], trackRequestSize(appID, evs)), appID, evs); err != nil {
		return fmt.Errorf("heap track app %s: %w: %w", appID, ErrRejected, err)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	body := buf.reader()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+TrackPath, body)
	if err != nil {
		body.Close()
		return fmt.Errorf("heap track app %s: %w", appID, err)
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
		return fmt.Errorf("heap track app %s: %w", appID, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("heap track app %s: %w", appID, &StatusError{
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Body:       strings.TrimSpace(string(msg)),
	})
}

// bodyBuf is a request body's bytes, reused once Track and every reader of
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

func parseRetryAfter(v string, now time.Time) time.Duration { return retryafter.Parse(v, now) }

// add_user_properties (DESIGN.md §3): single {app_id, identity, properties}
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
// classified like Track's: *StatusError, ErrRejected for 4xx but 408 and
// 429, Retryable for the rest, RetryAfter for Heap's wait.
func (c *Client) AddUserProperties(ctx context.Context, baseURL, appID string, body []byte) error {
	if len(body) > maxUserPropertiesBodyBytes {
		return fmt.Errorf("heap add_user_properties app %s: body of %d bytes: %w", appID, len(body), ErrRejected)
	}
	if !json.Valid(body) {
		return fmt.Errorf("heap add_user_properties app %s: body is not JSON: %w", appID, ErrRejected)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+UserPropertiesPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("heap add_user_properties app %s: %w", appID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("heap add_user_properties app %s: %w", appID, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("heap add_user_properties app %s: %w", appID, &StatusError{
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Body:       strings.TrimSpace(string(msg)),
	})
}
