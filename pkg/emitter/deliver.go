package emitter

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

// prepared is a batch ready to send: its events' JSON in arena.
type prepared struct {
	items []*item
	arena *[]byte
}

// arenas hold prepared batches' JSON, reused once they were sent.
var arenas = sync.Pool{New: func() any { return new([]byte) }}

// release gives p's arena back; its items' JSON goes with it.
func (p prepared) release() {
	for _, it := range p.items {
		it.json = nil
	}
	if cap(*p.arena) <= 8<<20 { // a rare huge batch is not kept
		arenas.Put(p.arena)
	}
}

// prepare finishes what the ledger says Heap already has of a taken batch,
// encodes the rest for Heap and dead-letters what does not encode. It
// returns what is left to send, or false when ctx ended first.
func (l *loop) prepare(ctx context.Context, k batchKey, batch []*item, sc *scratch) (prepared, bool) {
	batch, ok := l.skipDelivered(ctx, k, batch)
	if !ok {
		return prepared{}, false
	}
	p, bad := l.encode(batch, sc)
	if len(bad) > 0 && !l.deadLettered(ctx, k, bad) {
		p.release()
		return prepared{}, false
	}
	return p, true
}

// encode writes each item's Heap event into an arena, as its JSON. An
// event is decoded whole here, from its record's compact copy, whose bytes
// its strings share while it is encoded (accept read only its route). What
// does not decode, or encode, it returns as dead letters.
func (l *loop) encode(batch []*item, sc *scratch) (prepared, []deadItem) {
	arena := arenas.Get().(*[]byte)
	buf, ends := (*arena)[:0], sc.ends[:0]
	var dead []deadItem
	batch = slices.DeleteFunc(batch, func(it *item) bool {
		ev, err := l.cfg.Codec.DecodeView(it.value)
		if err != nil {
			dead = append(dead, deadItem{it.e, l.deadLetter(it.record(), "undecodable: "+err.Error()), it.src.ID})
			return true
		}
		n := len(buf)
		if buf, err = sc.appendEvent(buf, ev); err != nil {
			buf = buf[:n]
			dead = append(dead, deadItem{it.e, l.deadLetter(it.record(), "not encodable for Heap: "+err.Error()), it.src.ID})
			return true
		}
		ends = append(ends, len(buf))
		it.received = ev.Lineage.ReceivedAt.UnixMilli()
		return false
	})
	start := 0
	for i, it := range batch { // after the last append: buf may have moved
		it.json = buf[start:ends[i]:ends[i]]
		start = ends[i]
	}
	*arena, sc.ends = buf, ends
	return prepared{batch, arena}, dead
}

// sentBatch is what Heap took of a batch of n events, and what it refused.
type sentBatch struct {
	n         int
	delivered []*item
	dead      []deadItem
	at        time.Time
}

// deliver paces a prepared batch and sends it to Heap. It returns false
// only when ctx ended first.
func (l *loop) deliver(ctx context.Context, k batchKey, batch []*item, req *request) (sentBatch, bool) {
	if !l.pace(ctx, k, batch[0].src, batch) {
		return sentBatch{}, false
	}
	delivered, dead, err := l.send(ctx, k, batch, req)
	if err != nil {
		return sentBatch{}, false
	}
	return sentBatch{n: len(batch), delivered: delivered, dead: dead, at: time.Now()}, true
}

type deadItem struct {
	e      *entry
	rec    *kgo.Record
	source string
}

// send delivers items, retrying what may succeed later and splitting a
// rejected request until the bad events are isolated. It returns the
// delivered items and the dead letters, or ctx's error. It builds each
// request in req.
func (l *loop) send(ctx context.Context, k batchKey, items []*item, req *request) ([]*item, []deadItem, error) {
	evs := req.events(items)
	err := l.track(ctx, k, evs)
	switch {
	case err == nil:
		l.cfg.Log.Debug("delivered", zap.String("app", k.app), zap.Int("events", len(evs)))
		return items, nil, nil
	case !errors.Is(err, heap.ErrRejected):
		return nil, nil, err // ctx's
	case len(items) == 1:
		return nil, []deadItem{{items[0].e, l.deadLetter(items[0].record(), err.Error()), items[0].src.ID}}, nil
	}
	half := len(items) / 2
	okA, deadA, err := l.send(ctx, k, items[:half], req)
	if err != nil {
		return nil, nil, err
	}
	okB, deadB, err := l.send(ctx, k, items[half:], req)
	return append(okA, okB...), append(deadA, deadB...), err
}

// track sends one request until Heap accepts it (nil), rejects it
// (heap.ErrRejected: not retried, send splits it) or ctx ends (ctx's
// error). Other errors are retried, waiting at least what Heap asked for.
func (l *loop) track(ctx context.Context, k batchKey, evs [][]byte) error {
	p := retry.Policy{Initial: 200 * time.Millisecond, Max: l.cfg.MaxBackoff, After: heap.RetryAfter,
		Notify: func(err error, wait time.Duration) {
			l.cfg.Log.Warn("heap track failed; retrying", zap.String("app", k.app), zap.Int("events", len(evs)),
				zap.Duration("in", wait), zap.Error(err))
		}}
	return retry.Do(ctx, p, func() error {
		err := l.cfg.Heap.TrackEncoded(ctx, k.url, k.app, evs)
		switch {
		case err == nil:
			l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "ok")
			return nil
		case errors.Is(err, heap.ErrRejected):
			l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "rejected")
			return retry.Permanent(err)
		}
		l.cfg.Metrics.Inc(metrics.HeapRequests, k.app, "retryable")
		return err
	})
}

// deadLettered writes dead letters and marks them done. It returns false
// only when ctx ended first.
func (l *loop) deadLettered(ctx context.Context, k batchKey, dead []deadItem) bool {
	recs := make([]*kgo.Record, len(dead))
	for i, d := range dead {
		recs[i] = d.rec
	}
	if !l.produceDead(ctx, recs) {
		return false
	}
	es := make([]*entry, len(dead))
	for i, d := range dead {
		es[i] = d.e
	}
	l.cfg.Metrics.Add(metrics.EmitterEvents, float64(len(dead)), k.app, "", "dead_lettered")
	l.recordRejected(ctx, dead)
	l.finish(es)
	return true
}

// produceDead writes dead letters durably, retrying until ctx ends.
func (l *loop) produceDead(ctx context.Context, recs []*kgo.Record) bool {
	return l.retry(ctx, "dead-letter produce", func() error {
		return l.cl.ProduceSync(ctx, recs...).FirstErr()
	})
}

// deadLetter is r as a dead letter of reason, logged.
func (l *loop) deadLetter(r *kgo.Record, reason string) *kgo.Record {
	l.cfg.Log.Warn("dead-lettering event", zap.String("event_id", kafka.Header(r, kafka.HeaderEventID)),
		zap.String("reason", reason), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	return kafka.DeadLetter(r, l.cfg.Topics.EventsDLQ, reason)
}

// What follows is the emitter's one contact with the shape of heap.Event:
// encode writes each event's JSON through scratch.appendEvent, send hands
// the prepared JSON to TrackEncoded through request.events, and HeapEvent is what
// tests compare Heap's events with. The properties are the mapping's
// (mapping.AppendHeapProperties).

// scratch is a worker's reused memory for encoding events.
type scratch struct {
	props []heap.Property
	ts    [32]byte
	ends  []int
}

// appendEvent appends ev to b as Heap's Track API event, its JSON, building
// it in sc.
func (sc *scratch) appendEvent(b []byte, ev events.Event) ([]byte, error) {
	hev := heapEvent(sc.props[:0], ev, heap.AppendTimestamp(sc.ts[:0], ev.Time))
	sc.props = hev.Properties[:0]
	return heap.AppendEvent(b, hev)
}

// request is a sender's reused memory for a request's events.
type request struct{ evs [][]byte }

// events are items' prepared events, for TrackEncoded, which is done with
// them when it returns: the next request reuses their array.
func (r *request) events(items []*item) [][]byte {
	r.evs = r.evs[:0]
	for _, it := range items {
		r.evs = append(r.evs, it.json)
	}
	return r.evs
}

// HeapEvent turns a mapped event into a Track API event with Heap's exact
// property names, every value cut under Heap's length limit.
func HeapEvent(e events.Event) heap.Event {
	return heapEvent(make([]heap.Property, 0, mapping.HeapProperties), e, heap.AppendTimestamp(nil, e.Time))
}

// heapEvent is HeapEvent with its properties appended to props and ts, the
// event's time already formatted: the event shares their memory, and e's.
func heapEvent(props []heap.Property, e events.Event, ts []byte) heap.Event {
	// Only read while ts is: for the event's JSON, or by HeapEvent's caller,
	// whose ts nothing else holds.
	tss := unsafe.String(unsafe.SliceData(ts), len(ts))
	return heap.Event{
		Identity:       e.Identity,
		Event:          e.Name,
		Timestamp:      tss,
		Properties:     mapping.AppendHeapProperties(props, e, tss),
		IdempotencyKey: e.ID,
	}
}
