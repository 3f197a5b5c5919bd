package emitter

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
)

type batchKey struct{ url, app string }

type queue struct {
	key      batchKey
	items    []*item
	inflight int // taken by the worker, not finished
	wake     chan struct{}
	paused   bool
	max      int       // events queued before its partitions pause
	short    time.Time // zero, or since when a short batch waits (shortWait)
}

// poke wakes q's worker, or leaves it the wake-up already pending.
func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// work sends one app's queue until ctx ends, one request at a time, in
// three stages: it prepares the next request (decoding, ledger lookup)
// while a sender paces and sends one and a recorder notes the last one
// sent (ledger, counts) and marks it done. Heap waits on neither Redis nor
// the preparation.
func (l *loop) work(ctx context.Context, q *queue) {
	defer l.wg.Done()
	ready := make(chan prepared) // unbuffered: one batch prepared, one sent
	sent := make(chan sentBatch)
	var stages sync.WaitGroup
	stages.Go(func() {
		defer close(sent)
		l.sender(ctx, q, ready, sent)
	})
	stages.Go(func() { l.recorder(ctx, q, sent) })
	defer func() {
		close(ready)
		stages.Wait()
	}()
	l.preparer(ctx, q, ready)
}

// preparer takes q's batches as they are due and prepares them for the
// sender, until ctx ends.
func (l *loop) preparer(ctx context.Context, q *queue, ready chan<- prepared) {
	var sc scratch
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for l.due(q) {
			batch := l.take(ctx, q)
			if len(batch) == 0 {
				break
			}
			taken := len(batch)
			p, ok := l.prepare(ctx, q.key, batch, &sc)
			if !ok {
				return
			}
			l.mu.Lock()
			q.inflight -= taken - len(p.items) // dead-lettered or already delivered
			l.mu.Unlock()
			if len(p.items) == 0 {
				p.release()
				continue
			}
			select {
			case ready <- p:
			case <-ctx.Done():
				return
			}
		}
	}
}

// due reports whether q's next batch is to be taken now: a full one, or a
// short one while none is in flight and it need not wait for more
// (shortWait; q is poked once it waited).
func (l *loop) due(q *queue) bool {
	l.mu.Lock()
	n, limit, busy := len(q.items), l.batchLimit(q), q.inflight > 0
	var wait time.Duration
	if n > 0 && n < limit && !busy {
		wait = l.shortWait(q, time.Now())
	} else if n >= limit {
		q.short = time.Time{}
	}
	l.mu.Unlock()
	if n == 0 || n < limit && busy {
		// A short batch waits for the one in flight (the recorder wakes
		// us): under backlog every request goes out full.
		return false
	}
	if wait > 0 {
		time.AfterFunc(wait, q.poke)
		return false
	}
	return true
}

// sender paces and sends the prepared batches until ready closes or ctx
// ends.
func (l *loop) sender(ctx context.Context, q *queue, ready <-chan prepared, sent chan<- sentBatch) {
	var req request
	for p := range ready {
		s, ok := l.deliver(ctx, q.key, p.items, &req)
		if !ok {
			return // ctx ended: undelivered events stay uncommitted
		}
		p.release()
		sent <- s
	}
}

// recorder notes the sent batches and marks them done (record), and
// resumes fetching for q as it drains, until sent closes.
func (l *loop) recorder(ctx context.Context, q *queue, sent <-chan sentBatch) {
	for s := range sent {
		l.record(ctx, q.key, s)
		l.mu.Lock()
		q.inflight -= s.n
		if n := len(q.items) + q.inflight; q.paused && n <= q.max/2 || n < q.max/2 && l.pausedFor(q) {
			// Resume now (this queue drained, or it is short and a
			// partition paused for another app holds its events), not
			// after the poll loop's next poll: that waits on the paused
			// partitions' fetch (up to PollWait) while this queue runs dry.
			l.flowControl()
		}
		l.mu.Unlock()
		q.poke()
	}
}

// shortWait is how much longer a paced app's short batch waits for more of
// its events while a partition holding them is paused (flow control, for
// another app's full queue): at most the time its budget takes to grant a
// full batch, so the wait costs no throughput and the request goes out
// full. 0: send now. Caller holds mu.
func (l *loop) shortWait(q *queue, now time.Time) time.Duration {
	perMin := q.items[0].src.AppEventsPerMinute
	if l.cfg.Pacer == nil || perMin <= 0 || !l.pausedFor(q) {
		q.short = time.Time{}
		return 0
	}
	if q.short.IsZero() {
		q.short = now
	}
	if left := time.Duration(l.batchLimit(q))*time.Minute/time.Duration(perMin) - now.Sub(q.short); left > 0 {
		return left
	}
	q.short = time.Time{} // waited enough: this one goes short, the next waits again
	return 0
}

// take pops the next batch, lingering briefly for a fuller one.
func (l *loop) take(ctx context.Context, q *queue) []*item {
	l.mu.Lock()
	n, limit := len(q.items), l.batchLimit(q)
	l.mu.Unlock()
	if n > 0 && n < limit {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(l.cfg.Linger):
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	limit = l.batchLimit(q)
	perIdentity := limit
	if l.cfg.Pacer != nil && len(q.items) > 0 {
		// An identity's budget grants at most its burst at once; its later
		// events wait for the next batch, in order.
		perIdentity = pacing.MaxBatch(q.items[0].src.IdentityEventsPerMinute)
	}
	if perIdentity >= limit { // unpaced: the first limit, in order
		n := min(limit, len(q.items))
		batch := slices.Clone(q.items[:n])
		rest := copy(q.items, q.items[n:])
		clear(q.items[rest:])
		q.items = q.items[:rest]
		q.inflight += n
		return batch
	}
	counts := map[string]int{}
	var batch []*item
	rest := q.items[:0]
	for _, it := range q.items {
		if len(batch) < limit && counts[it.identity] < perIdentity {
			counts[it.identity]++
			batch = append(batch, it)
		} else {
			rest = append(rest, it)
		}
	}
	clear(q.items[len(rest):])
	q.items = rest
	q.inflight += len(batch)
	return batch
}

// batchLimit is the largest request: Heap's 1000, or less when pacing grants less. Caller holds mu.
func (l *loop) batchLimit(q *queue) int {
	limit := l.cfg.MaxBatch
	if len(q.items) > 0 && l.cfg.Pacer != nil {
		limit = min(limit, pacing.MaxBatch(q.items[0].src.AppEventsPerMinute))
	}
	return limit
}
