package heap

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

type captured struct {
	Method, Path, ContentType string
	Body                      any
}

func TestTrackRequestShape(t *testing.T) {
	evs := []Event{
		{
			Identity:       "a@example.com",
			Event:          "Email Opened",
			Timestamp:      "2024-03-05T07:08:09.123Z",
			Properties:     []Property{{"campaign", "spring"}, {"count", "3"}},
			IdempotencyKey: "k1",
		},
		{Identity: "b@example.com", Event: "Email Clicked"},
	}
	want := captured{
		Method:      http.MethodPost,
		Path:        TrackPath,
		ContentType: "application/json",
		Body: map[string]any{
			"app_id": "12345",
			"events": []any{
				map[string]any{
					"identity":        "a@example.com",
					"event":           "Email Opened",
					"timestamp":       "2024-03-05T07:08:09.123Z",
					"properties":      map[string]any{"campaign": "spring", "count": "3"},
					"idempotency_key": "k1",
				},
				map[string]any{"identity": "b@example.com", "event": "Email Clicked"},
			},
		},
	}
	for _, suffix := range []string{"", "/"} {
		t.Run("base URL "+strconv.Quote(suffix), func(t *testing.T) {
			var got []captured
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := captured{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
				if err := json.NewDecoder(r.Body).Decode(&c.Body); err != nil {
					t.Errorf("request body is not JSON: %v", err)
				}
				got = append(got, c)
			}))
			defer srv.Close()
			c := &Client{HTTP: srv.Client()}
			if err := c.Track(context.Background(), srv.URL+suffix, "12345", evs); err != nil {
				t.Fatalf("Track: %v", err)
			}
			// The same events encoded ahead: the same request.
			var encoded [][]byte
			for _, e := range evs {
				b, err := AppendEvent(nil, e)
				if err != nil {
					t.Fatal(err)
				}
				encoded = append(encoded, b)
			}
			if err := c.TrackEncoded(context.Background(), srv.URL+suffix, "12345", encoded); err != nil {
				t.Fatalf("TrackEncoded: %v", err)
			}
			if diff := cmp.Diff([]captured{want, want}, got); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

// countingServer counts requests and answers 200.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func events(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Identity: "id" + strconv.Itoa(i), Event: "e", IdempotencyKey: "k" + strconv.Itoa(i)}
	}
	return evs
}

func TestTrackBatchSize(t *testing.T) {
	tests := []struct {
		name         string
		evs          []Event
		wantErr      bool
		wantRequests int64
	}{
		{"nil batch sends nothing", nil, false, 0},
		{"empty batch sends nothing", []Event{}, false, 0},
		{"one event", events(1), false, 1},
		{"MaxBatch events", events(MaxBatch), false, 1},
		{"over MaxBatch refused without a request", events(MaxBatch + 1), true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := countingServer(t)
			c := &Client{HTTP: srv.Client()}
			var encoded [][]byte
			for _, e := range tt.evs {
				b, _ := AppendEvent(nil, e)
				encoded = append(encoded, b)
			}
			for name, err := range map[string]error{
				"Track":        c.Track(context.Background(), srv.URL, "1", tt.evs),
				"TrackEncoded": c.TrackEncoded(context.Background(), srv.URL, "1", encoded),
			} {
				if (err != nil) != tt.wantErr {
					t.Fatalf("%s: err = %v, want error %v", name, err, tt.wantErr)
				}
				if err != nil {
					// Resending the same batch cannot help: the caller must split it.
					if Retryable(err) {
						t.Errorf("Retryable(%v) = true, want false", err)
					}
					if !errors.Is(err, ErrRejected) {
						t.Errorf("errors.Is(%v, ErrRejected) = false, want true", err)
					}
				}
			}
			if got := n.Load(); got != 2*tt.wantRequests {
				t.Errorf("server saw %d requests, want %d", got, 2*tt.wantRequests)
			}
		})
	}
}

func TestTrackUnencodableEvent(t *testing.T) {
	srv, n := countingServer(t)
	c := &Client{HTTP: srv.Client()}
	evs := []Event{{Identity: "a", Event: "e", Properties: []Property{{"score", "1"}, {"score", "2"}}}}
	err := c.Track(context.Background(), srv.URL, "1", evs)
	if err == nil {
		t.Fatal("Track with a property twice: err = nil, want an error")
	}
	if Retryable(err) || !errors.Is(err, ErrRejected) {
		t.Errorf("Track with a property twice: Retryable = %v, ErrRejected = %v; want false, true", Retryable(err), errors.Is(err, ErrRejected))
	}
	if got := n.Load(); got != 0 {
		t.Errorf("server saw %d requests, want 0", got)
	}
}

func TestTrackStatus(t *testing.T) {
	tests := []struct {
		status         int
		retryAfter     string
		body           string
		wantErr        bool
		wantRejected   bool
		wantRetryable  bool
		wantRetryAfter time.Duration
	}{
		{status: 200},
		{status: 201},
		{status: 202},
		{status: 204},
		{status: 400, body: `{"error":"bad event"}`, wantErr: true, wantRejected: true},
		{status: 401, wantErr: true, wantRejected: true},
		{status: 404, body: "not found\n", wantErr: true, wantRejected: true},
		{status: 413, wantErr: true, wantRejected: true},
		{status: 422, wantErr: true, wantRejected: true},
		{status: 400, retryAfter: "7", wantErr: true, wantRejected: true, wantRetryAfter: 7 * time.Second},
		{status: 408, wantErr: true, wantRetryable: true},
		{status: 429, retryAfter: "7", wantErr: true, wantRetryable: true, wantRetryAfter: 7 * time.Second},
		{status: 429, wantErr: true, wantRetryable: true},
		{status: 429, retryAfter: "garbage", wantErr: true, wantRetryable: true},
		{status: 500, wantErr: true, wantRetryable: true},
		{status: 502, wantErr: true, wantRetryable: true},
		{status: 503, retryAfter: "3", body: "down for maintenance", wantErr: true, wantRetryable: true, wantRetryAfter: 3 * time.Second},
		{status: 504, wantErr: true, wantRetryable: true},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status)+"/"+tt.retryAfter, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := &Client{HTTP: srv.Client()}
			err := c.Track(context.Background(), srv.URL, "1", events(2))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Track: err = %v, want error %v", err, tt.wantErr)
			}
			if got := errors.Is(err, ErrRejected); got != tt.wantRejected {
				t.Errorf("errors.Is(%v, ErrRejected) = %v, want %v", err, got, tt.wantRejected)
			}
			if got := Retryable(err); got != tt.wantRetryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tt.wantRetryable)
			}
			if got := RetryAfter(err); got != tt.wantRetryAfter {
				t.Errorf("RetryAfter(%v) = %v, want %v", err, got, tt.wantRetryAfter)
			}
			if !tt.wantErr {
				return
			}
			var se *httperr.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("errors.As(%v, *httperr.StatusError) = false", err)
			}
			if se.Status != tt.status || se.Body != strings.TrimSpace(tt.body) {
				t.Errorf("StatusError = {%d, %q}, want {%d, %q}", se.Status, se.Body, tt.status, strings.TrimSpace(tt.body))
			}
			if !strings.Contains(err.Error(), "app 1") {
				t.Errorf("error %q does not name the app", err)
			}
		})
	}
}

func TestTrackErrorBodyBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, strings.Repeat("x", 1<<20))
	}))
	defer srv.Close()
	err := (&Client{HTTP: srv.Client()}).Track(context.Background(), srv.URL, "1", events(1))
	var se *httperr.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Track: err = %v, want a *httperr.StatusError", err)
	}
	if len(se.Body) > maxErrorBodyBytes {
		t.Errorf("StatusError.Body is %d bytes, want at most %d", len(se.Body), maxErrorBodyBytes)
	}
}

// Heap's answers may quote the request: errors (which become log lines and
// dead-letter reasons) show them with addresses redacted, cut short, with a
// digest of the whole, and keep their classification.
func TestStatusErrorRedactsAnswer(t *testing.T) {
	const addr = "alice.smith+vip@example.com"
	body := `{"error":"events[0]: identity \"` + addr + `\" refused"}`
	redacted := `{"error":"events[0]: identity \"[address]\" refused"}`
	for _, c := range []struct {
		status                  int
		body                    string
		wantRejected, retryable bool
		want                    string
	}{
		{400, body, true, false, "heap: 400 Bad Request: " + redacted + " (body sha256:"},
		{422, body, true, false, "heap: 422 Unprocessable Entity: " + redacted + " (body sha256:"},
		{503, body, false, true, "heap: 503 Service Unavailable: " + redacted + " (body sha256:"},
		{429, "", false, true, "heap: 429 Too Many Requests (empty body)"},
		{499, body, true, false, "heap: 499: " + redacted + " (body sha256:"},
	} {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			cl := &Client{HTTP: srv.Client()}
			for name, err := range map[string]error{
				"Track":             cl.Track(context.Background(), srv.URL, "1", events(1)),
				"AddUserProperties": cl.AddUserProperties(context.Background(), srv.URL, "1", []byte(`{"app_id":"1","identity":"u","properties":{}}`)),
			} {
				msg := err.Error()
				if strings.Contains(msg, "@") || strings.Contains(msg, "example.com") {
					t.Errorf("%s: error %q quotes an address", name, msg)
				}
				if !strings.Contains(msg, c.want) {
					t.Errorf("%s: error %q, want it to contain %q", name, msg, c.want)
				}
				if c.body != "" && !strings.Contains(msg, strconv.Itoa(len(c.body))+" bytes)") {
					t.Errorf("%s: error %q does not give the answer's size %d", name, msg, len(c.body))
				}
				if errors.Is(err, ErrRejected) != c.wantRejected || Retryable(err) != c.retryable {
					t.Errorf("%s: rejected %v retryable %v, want %v %v", name, errors.Is(err, ErrRejected), Retryable(err), c.wantRejected, c.retryable)
				}
				var se *httperr.StatusError
				if !errors.As(err, &se) || se.Body != c.body {
					t.Errorf("%s: StatusError.Body %q, want Heap's answer %q for inspection", name, se.Body, c.body)
				}
			}
		})
	}
	// The same refusal has the same digest whoever it quotes (the digest is
	// of the redacted answer: it confirms no guessed address); another
	// refusal has another.
	a := (&httperr.StatusError{API: "heap", Status: 400, Body: body}).Error()
	b := (&httperr.StatusError{API: "heap", Status: 400, Body: strings.Replace(body, "alice", "bob", 1)}).Error()
	d := (&httperr.StatusError{API: "heap", Status: 400, Body: strings.Replace(body, "refused", "blocked", 1)}).Error()
	digest := func(s string) string {
		_, d, _ := strings.Cut(s, "sha256:")
		return d[:8]
	}
	if digest(a) != digest(b) || digest(a) == digest(d) {
		t.Errorf("digests: %q, %q, %q: want the first two equal, the third different", a, b, d)
	}
	// A long answer is cut; one line whatever Heap sent.
	long := (&httperr.StatusError{API: "heap", Status: 400, Body: "line one\n\tline two " + strings.Repeat("x", 4000)}).Error()
	if !strings.Contains(long, ": line one line two xxx") || !strings.Contains(long, "x… (body sha256:") ||
		strings.ContainsAny(long, "\n\t") || utf8.RuneCountInString(long) > 300 {
		t.Errorf("long answer shown as %q", long)
	}
}

func TestTrackMalformedSuccessBody(t *testing.T) {
	for _, body := range []string{"{not json", "<html>ok</html>", "\x00\xff"} {
		t.Run(strconv.Quote(body), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, body)
			}))
			defer srv.Close()
			if err := (&Client{HTTP: srv.Client()}).Track(context.Background(), srv.URL, "1", events(1)); err != nil {
				t.Errorf("Track: %v, want nil", err)
			}
		})
	}
}

// stallingServer never answers until the request is abandoned or the test ends.
func stallingServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks handlers before Close waits for them
	return srv
}

func TestTrackTimeouts(t *testing.T) {
	tests := []struct {
		name          string
		timeout       time.Duration                                // Client.Timeout
		ctx           func() (context.Context, context.CancelFunc) // the caller's context
		wantIs        error
		wantRetryable bool
	}{
		{
			name:          "client timeout bounds a slow server",
			timeout:       50 * time.Millisecond,
			ctx:           func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			wantIs:        context.DeadlineExceeded,
			wantRetryable: true,
		},
		{
			name: "caller deadline bounds a slow server",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			wantIs:        context.DeadlineExceeded,
			wantRetryable: true,
		},
		{
			name: "context cancelled before the call",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantIs: context.Canceled,
		},
		{
			name:    "context cancelled during the call",
			timeout: time.Hour,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := stallingServer(t)
			ctx, cancel := tt.ctx()
			defer cancel()
			c := &Client{HTTP: srv.Client(), Timeout: tt.timeout}
			done := make(chan error, 1)
			go func() { done <- c.Track(ctx, srv.URL, "1", events(1)) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Track did not return within 30s of a stalled server")
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Track: err = %v, want errors.Is %v", err, tt.wantIs)
			}
			if errors.Is(err, ErrRejected) {
				t.Errorf("errors.Is(%v, ErrRejected) = true, want false", err)
			}
			if got := Retryable(err); got != tt.wantRetryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tt.wantRetryable)
			}
		})
	}
}

func TestTrackTransportFailureRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	err := (&Client{}).Track(context.Background(), url, "1", events(1))
	if err == nil {
		t.Fatal("Track to a closed server: err = nil")
	}
	if !Retryable(err) || errors.Is(err, ErrRejected) {
		t.Errorf("Track to a closed server: Retryable = %v, ErrRejected = %v; want true, false", Retryable(err), errors.Is(err, ErrRejected))
	}
}

func TestRetryableNil(t *testing.T) {
	if Retryable(nil) {
		t.Error("Retryable(nil) = true")
	}
	if RetryAfter(nil) != 0 || RetryAfter(errors.New("x")) != 0 {
		t.Error("RetryAfter of a non-status error is not zero")
	}
}

// sentRequest is what the tests' servers read of a bulk body.
type sentRequest struct {
	AppID  string `json:"app_id"`
	Events []struct {
		Identity string `json:"identity"`
	} `json:"events"`
}

// TestTrackBodiesNotSharedEarly: request buffers are reused, but only once
// the transport is done with them. The server answers requests with a 400
// before reading their bodies, so the transport may still be writing one
// after Track returned (HTTP/1.1), or cancel it from another goroutine while
// still reading it (HTTP/2); every body read in full must still be its own
// request's, and -race must see no race.
func TestTrackBodiesNotSharedEarly(t *testing.T) {
	testsupport.Integration(t, "HTTP/1.1 and HTTP/2 transport stress under the race detector")
	tests := []struct {
		name  string
		h2    bool
		early int64 // every early-th request is answered at once
		reqs  int   // per sender
	}{
		{"HTTP/1.1, half rejected early", false, 2, 20},
		{"HTTP/2, half rejected early", true, 2, 20},
		{"HTTP/2, all rejected early", true, 1, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bad, n atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req sentRequest
				if n.Add(1)%tt.early == 0 {
					r.Body.Read(make([]byte, 1000)) // the upload is under way
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					bad.Add(1)
					return
				}
				for _, e := range req.Events {
					if !strings.HasPrefix(e.Identity, req.AppID+"-") {
						bad.Add(1)
					}
				}
			}))
			if tt.h2 {
				srv.EnableHTTP2 = true
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			c := &Client{HTTP: srv.Client()}
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					app := strconv.Itoa(g)
					evs, encoded := make([]Event, MaxBatch), make([][]byte, MaxBatch)
					for i := range evs {
						evs[i] = Event{Identity: app + "-" + strconv.Itoa(i), Event: "e", Properties: []Property{{"p", strings.Repeat("v", 900)}}}
						encoded[i], _ = AppendEvent(nil, evs[i])
					}
					for i := range tt.reqs { // the early ones fail: 400
						if i%2 == 0 {
							c.Track(context.Background(), srv.URL, app, evs)
						} else {
							c.TrackEncoded(context.Background(), srv.URL, app, encoded)
						}
					}
				})
			}
			wg.Wait()
			if n := bad.Load(); n > 0 {
				t.Fatalf("%d bodies held another request's events", n)
			}
		})
	}
}

// TestTrackFollowsRedirect: a 307 or 308 is followed with the same body.
func TestTrackFollowsRedirect(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == TrackPath {
			http.Redirect(w, r, "/moved"+TrackPath, http.StatusTemporaryRedirect)
			return
		}
		var req sentRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err == nil {
			got.Add(int64(len(req.Events)))
		}
	}))
	defer srv.Close()
	c := &Client{HTTP: srv.Client()}
	if err := c.Track(context.Background(), srv.URL, "1", events(3)); err != nil || got.Load() != 3 {
		t.Fatalf("Track = %v, %d events at the redirect's target; want nil, 3", err, got.Load())
	}
}
