package ingress

// Reading request bodies from a hostile internet. A body is read before it
// can be authenticated (a Mandrill signature covers the body), so what it
// may cost is bounded three ways: each route's limit, refused at once when
// Content-Length already exceeds it; a budget of body bytes in flight
// across all requests, taken as the bytes arrive (never from the declared
// Content-Length), so a thousand slow senders hold only what they sent; and
// the server's read timeout, which ends a body that trickles.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

// Body limits. An audience webhook is a form of a few hundred bytes;
// Mandrill sends at most 1000 events a batch, well under a megabyte as its
// events are (the fixture batch is under 1 KB an event), so 8 MiB leaves
// room for large metadata without letting a post hold much.
const (
	MaxListBody     = 64 << 10
	MaxMandrillBody = 8 << 20
)

// DefaultInflightBytes is the default budget of request-body bytes held
// at once by all requests (INGRESS_MAX_INFLIGHT_BYTES).
const DefaultInflightBytes = 64 << 20

// budgetWait is how long a request waits for budget before it is answered
// 503: a sender (Mailchimp and Mandrill both retry) comes back later.
const budgetWait = 2 * time.Second

// growStep is the least a body's buffer grows by, and so the least budget
// taken at a time.
const growStep = 64 << 10

var errBusy = errors.New("ingress busy: too many request bytes in flight")

// budget is the shared bound on body bytes in flight.
type budget struct{ sem *semaphore.Weighted }

func newBudget(n int64) *budget {
	if n <= 0 {
		n = DefaultInflightBytes
	}
	return &budget{sem: semaphore.NewWeighted(n)}
}

// take reserves n bytes, waiting at most budgetWait.
func (b *budget) take(ctx context.Context, n int64) error {
	if b.sem.TryAcquire(n) { // the common case: no timer to set up
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, budgetWait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		return errBusy
	}
	return nil
}

func (b *budget) give(n int64) {
	if n > 0 {
		b.sem.Release(n)
	}
}

// body is one request's bytes and the budget they hold; release returns it.
type body struct {
	buf  []byte
	held int64
	b    *budget
}

func (bd *body) release() {
	bd.b.give(bd.held)
	bd.held = 0
}

// read reads r's body into bd.buf (reusing its storage when the budget
// covers it), growing the buffer only as bytes arrive and taking budget for
// every growth first.
func (bd *body) read(w http.ResponseWriter, r *http.Request, limit int64) *problem {
	if r.ContentLength > limit {
		return &problem{http.StatusRequestEntityTooLarge, "body over the limit"}
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	buf := bd.buf[:0]
	if int64(cap(buf)) > bd.held { // pooled storage: held only once paid for
		if err := bd.b.take(r.Context(), int64(cap(buf))-bd.held); err != nil {
			buf = nil
		} else {
			bd.held = int64(cap(buf))
		}
	}
	for {
		if len(buf) == cap(buf) {
			grow := max(int64(cap(buf)), growStep)
			if cap(buf) == 0 && r.ContentLength >= 0 && r.ContentLength < growStep {
				// A small declared body starts in a buffer its size, and one
				// byte to read the end into: an audience webhook does not
				// cost a whole step. A sender that lied grows step by step.
				grow = r.ContentLength + 1
			}
			grow = min(grow, limit+1-int64(cap(buf)))
			if grow <= 0 {
				grow = 1
			}
			if err := bd.b.take(r.Context(), grow); err != nil {
				bd.buf = buf
				return &problem{http.StatusServiceUnavailable, err.Error()}
			}
			bd.held += grow
			next := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(next, buf)
			buf = next
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var tooBig *http.MaxBytesError
		switch {
		case err == io.EOF:
			bd.buf = buf
			return nil
		case errors.As(err, &tooBig):
			bd.buf = buf
			return &problem{http.StatusRequestEntityTooLarge, "body over the limit"}
		case err != nil:
			bd.buf = buf
			return &problem{http.StatusBadRequest, "read body: " + err.Error()}
		}
	}
}
