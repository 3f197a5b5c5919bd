// Package httpfault is the fault injection the HTTP stand-ins share
// (heaptest, mailchimptest): a queue of canned answers and how to give one.
package httpfault

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault is one injected answer, used for the next Times requests (default 1).
type Fault struct {
	Status     int           // answer with this status (default 503)
	RetryAfter string        // Retry-After header value, if any
	Delay      time.Duration // sleep before answering (a timeout when longer than the client's)
	Body       string        // body to send; for 2xx, a malformed body the client must tolerate
	Times      int
}

// Queue holds faults to answer in order. Its zero value is empty and ready.
type Queue struct {
	mu     sync.Mutex
	faults []Fault
}

// Inject queues faults.
func (q *Queue) Inject(fs ...Fault) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, f := range fs {
		if f.Times <= 0 {
			f.Times = 1
		}
		q.faults = append(q.faults, f)
	}
}

// Clear drops the faults not answered yet.
func (q *Queue) Clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.faults = nil
}

// Next takes the next fault to answer, if any.
func (q *Queue) Next() (Fault, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.faults) == 0 {
		return Fault{}, false
	}
	f := q.faults[0]
	q.faults[0].Times--
	if q.faults[0].Times == 0 {
		q.faults = q.faults[1:]
	}
	return f, true
}

// Answer gives f as the response. A JSON body is labelled errorType when
// the status is an error (e.g. application/problem+json), else application/json.
func Answer(w http.ResponseWriter, r *http.Request, f Fault, errorType string) {
	// Drain the body: net/http notices a client hanging up (r.Context() done)
	// only once the body is read, and a Delay must end when the client gives up.
	io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	if strings.HasPrefix(strings.TrimSpace(f.Body), "{") {
		ct := "application/json"
		if status >= 400 {
			ct = errorType
		}
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(status)
	io.WriteString(w, f.Body)
}
