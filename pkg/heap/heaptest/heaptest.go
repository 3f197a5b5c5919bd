// Package heaptest is a stand-in for Heap's Track and add_user_properties
// APIs (add_user_properties: userprops.go) that enforces the
// documented contract and limits (docs/ARCHITECTURE.md §7), records what it accepted,
// and injects faults on demand. Tests and the local stack use it.
package heaptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpfault"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
)

// Event is an event as the stand-in received it: its properties decoded
// (numbers as json.Number), as Heap takes them, strings or numbers.
type Event struct {
	Identity       string         `json:"identity"`
	Event          string         `json:"event"`
	Timestamp      string         `json:"timestamp,omitempty"`
	Properties     map[string]any `json:"properties,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
}

// EventOf is e as the stand-in keeps it once sent (its strings valid UTF-8).
func EventOf(e heap.Event) Event {
	ev := Event{Identity: e.Identity, Event: e.Event, Timestamp: e.Timestamp, IdempotencyKey: e.IdempotencyKey}
	if len(e.Properties) > 0 {
		ev.Properties = make(map[string]any, len(e.Properties))
		for _, p := range e.Properties {
			ev.Properties[p.Key] = p.Value
		}
	}
	return ev
}

// Request is a bulk track request as the stand-in decoded it; json.Marshal
// writes it as a Track body.
type Request struct {
	AppID  string  `json:"app_id"`
	Events []Event `json:"events"`
}

// Accepted is one event Heap kept.
type Accepted struct {
	AppID string
	Event
	ReceivedAt time.Time
}

// Fault is one injected answer, used for the next Times requests (default 1).
type Fault = httpfault.Fault

// Limits are Heap's rate limits; zero values disable a limit.
type Limits struct {
	PerApp      int           // events per Window per app
	PerIdentity int           // events per Window per app and identity
	Window      time.Duration // one minute in Heap
	// add_user_properties: requests per UserWindow per app and identity.
	UserPerIdentity int
	UserWindow      time.Duration // 30 s in Heap
}

// DocumentedLimits are Heap's published bulk-track limits.
var DocumentedLimits = Limits{PerApp: heap.AppEventsPerMin, PerIdentity: heap.IdentityPerMin, Window: time.Minute,
	UserPerIdentity: heap.UserPropertiesPerIdentity, UserWindow: heap.UserPropertiesWindow}

// Sink is the stand-in's state and its http.Handler.
type Sink struct {
	mu         sync.Mutex
	limits     Limits
	accepted   []Accepted
	keys       map[string]bool // app + idempotency key
	duplicates int
	requests   int
	rejected   int
	throttled  int
	faults     httpfault.Queue
	window     map[string][]time.Time // rate-limit key -> event times in the window
	now        func() time.Time
	onAccept   func(app string, evs []Event)
	faultFn    func(Request) *Fault
	users      userState // add_user_properties
}

// Option configures a Sink.
type Option func(*Sink)

// WithLimits replaces the documented rate limits (Limits{} disables them).
func WithLimits(l Limits) Option { return func(s *Sink) { s.limits = l } }

// FaultFunc decides, per decoded request, an answer to give instead of
// serving it (nil: serve). Use it for faults that depend on the request: a
// poison event, an app that is down.
func FaultFunc(fn func(Request) *Fault) Option {
	return func(s *Sink) { s.faultFn = fn }
}

// OnAccept is called with each request's newly kept events.
func OnAccept(fn func(app string, evs []Event)) Option {
	return func(s *Sink) { s.onAccept = fn }
}

// NewSink returns a stand-in enforcing DocumentedLimits unless told otherwise.
func NewSink(opts ...Option) *Sink {
	s := &Sink{limits: DocumentedLimits, keys: map[string]bool{}, window: map[string][]time.Time{}, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Server is a Sink served over HTTP for a test.
type Server struct {
	*Sink
	URL string
}

// NewServer starts a Sink on loopback and stops it when the test ends.
func NewServer(t interface{ Cleanup(func()) }, opts ...Option) *Server {
	s := NewSink(opts...)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &Server{Sink: s, URL: srv.URL}
}

// Inject queues faults, answered in order before normal service resumes.
func (s *Sink) Inject(fs ...Fault) { s.faults.Inject(fs...) }

// ClearFaults drops the faults not answered yet.
func (s *Sink) ClearFaults() { s.faults.Clear() }

// Accepted returns the events kept so far, in arrival order.
func (s *Sink) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// Stats are the stand-in's counters.
type Stats struct {
	Requests, Accepted, Duplicates, Rejected, Throttled int
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Requests: s.requests, Accepted: len(s.accepted), Duplicates: s.duplicates, Rejected: s.rejected, Throttled: s.throttled}
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == heap.UserPropertiesPath {
		s.serveUserProperties(w, r)
		return
	}
	if r.URL.Path != heap.TrackPath {
		http.NotFound(w, r)
		return
	}
	body, ok := s.readPost(w, r, &s.requests, s.reject)
	if !ok {
		return
	}
	req, err := decode(body)
	if err != nil {
		s.reject(w, err.Error())
		return
	}
	if msg := validate(req); msg != "" {
		s.reject(w, msg)
		return
	}
	if s.faultFn != nil {
		if f := s.faultFn(req); f != nil {
			if f.Status == http.StatusBadRequest {
				s.mu.Lock()
				s.rejected++
				s.mu.Unlock()
			}
			httpfault.Answer(w, r, *f, "application/json")
			return
		}
	}
	kept, retryAfter, which := s.admit(req)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
		httpjson.Write(w, http.StatusTooManyRequests, map[string]string{"error": which + " rate limit exceeded"})
		return
	}
	if s.onAccept != nil && len(kept) > 0 {
		s.onAccept(req.AppID, kept)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{})
}

func (s *Sink) reject(w http.ResponseWriter, msg string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	httpjson.Write(w, http.StatusBadRequest, map[string]string{"error": msg})
}

// decode reads a bulk body, or a single-event body as a batch of one.
func decode(body []byte) (Request, error) {
	var raw struct {
		AppID  *string           `json:"app_id"`
		Events []json.RawMessage `json:"events"`
		Event
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Request{}, fmt.Errorf("invalid JSON: %v", err)
	}
	req := Request{}
	if raw.AppID != nil {
		req.AppID = *raw.AppID
	}
	if raw.Events == nil {
		req.Events = []Event{raw.Event}
		return req, nil
	}
	for i, re := range raw.Events {
		var e Event
		d := json.NewDecoder(strings.NewReader(string(re)))
		d.UseNumber()
		if err := d.Decode(&e); err != nil {
			return Request{}, fmt.Errorf("events[%d]: %v", i, err)
		}
		req.Events = append(req.Events, e)
	}
	return req, nil
}

// validate enforces docs/ARCHITECTURE.md §7.1; any violation rejects the whole request.
func validate(req Request) string {
	if req.AppID == "" {
		return "app_id is required"
	}
	if len(req.Events) == 0 {
		return "events must not be empty"
	}
	if len(req.Events) > heap.MaxBatch {
		return fmt.Sprintf("at most %d events per request, got %d", heap.MaxBatch, len(req.Events))
	}
	for i, e := range req.Events {
		switch {
		case e.Identity == "":
			return fmt.Sprintf("events[%d]: identity is required", i)
		case utf8.RuneCountInString(e.Identity) > heap.MaxIdentityLen:
			return fmt.Sprintf("events[%d]: identity longer than %d characters", i, heap.MaxIdentityLen)
		case e.Event == "":
			return fmt.Sprintf("events[%d]: event is required", i)
		case utf8.RuneCountInString(e.Event) > heap.MaxEventNameLen:
			return fmt.Sprintf("events[%d]: event longer than %d characters", i, heap.MaxEventNameLen)
		}
		if e.Timestamp != "" {
			if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil {
				return fmt.Sprintf("events[%d]: timestamp %q is not ISO 8601", i, e.Timestamp)
			}
		}
		if err := heap.CheckProperties(e.Properties); err != nil {
			return fmt.Sprintf("events[%d]: %v", i, err)
		}
	}
	return ""
}

// admit applies the rate limits, then keeps the events not seen before.
// It returns a wait when the request would go over a limit; nothing is kept then.
func (s *Sink) admit(req Request) ([]Event, time.Duration, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if wait, which := s.overLimit(req, now); wait > 0 {
		s.throttled++
		return nil, wait, which
	}
	var kept []Event
	for _, e := range req.Events {
		if e.IdempotencyKey != "" {
			k := req.AppID + "\x00" + e.IdempotencyKey
			if s.keys[k] {
				s.duplicates++
				continue
			}
			s.keys[k] = true
		}
		s.accepted = append(s.accepted, Accepted{AppID: req.AppID, Event: e, ReceivedAt: now})
		kept = append(kept, e)
	}
	return kept, 0, ""
}

// overLimit counts every event of the request (Heap's limits are on events
// received, deduplicated or not) against sliding one-window budgets.
func (s *Sink) overLimit(req Request, now time.Time) (time.Duration, string) {
	if s.limits.Window <= 0 {
		return 0, ""
	}
	perKey := map[string]int{}
	if s.limits.PerApp > 0 {
		perKey["app\x00"+req.AppID] = len(req.Events)
	}
	if s.limits.PerIdentity > 0 {
		for _, e := range req.Events {
			perKey["id\x00"+req.AppID+"\x00"+e.Identity]++
		}
	}
	var wait time.Duration
	var which string
	for k, n := range perKey {
		limit, kind := s.limits.PerIdentity, "identity"
		if strings.HasPrefix(k, "app\x00") {
			limit, kind = s.limits.PerApp, "app"
		}
		ts := s.prune(k, now)
		if len(ts)+n > limit {
			// Wait until enough of the window has expired.
			idx := len(ts) + n - limit - 1
			if idx >= len(ts) {
				idx = len(ts) - 1
			}
			w := s.limits.Window
			if idx >= 0 {
				w = ts[idx].Add(s.limits.Window).Sub(now)
			}
			if w > wait {
				wait, which = w, kind
			}
		}
	}
	if wait > 0 {
		return max(wait, time.Millisecond), which
	}
	for k, n := range perKey {
		for range n {
			s.window[k] = append(s.window[k], now)
		}
	}
	return 0, ""
}

func (s *Sink) prune(k string, now time.Time) []time.Time {
	ts := s.window[k]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-s.limits.Window)) {
		i++
	}
	ts = ts[i:]
	s.window[k] = ts
	return ts
}

// readPost is what every endpoint does first: refuse other methods, count
// the request in *requests, answer an injected fault, and read the body
// (reject answers a read failure). ok is false when w was answered.
func (s *Sink) readPost(w http.ResponseWriter, r *http.Request, requests *int, reject func(http.ResponseWriter, string)) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil, false
	}
	s.mu.Lock()
	*requests++
	s.mu.Unlock()
	if f, ok := s.faults.Next(); ok {
		httpfault.Answer(w, r, f, "application/json")
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		reject(w, "read body: "+err.Error())
		return nil, false
	}
	return body, true
}
