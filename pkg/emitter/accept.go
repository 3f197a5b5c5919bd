package emitter

import (
	"context"
	"strings"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/twmb/franz-go/pkg/kgo"
)

// accept registers polled records and queues their events per app.
func (l *loop) accept(ctx context.Context, recs []*kgo.Record) {
	var dead []*kgo.Record
	var deadEntries []*entry
	l.mu.Lock()
	defer func() {
		l.mu.Unlock()
		if len(dead) > 0 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				if l.produceDead(ctx, dead) {
					l.finish(deadEntries)
				}
			}()
		}
	}()
	var p *partition // the last record's: a poll brings runs of one partition
	var q *queue     // the last record's
	for _, r := range recs {
		if key := (tp{r.Topic, r.Partition}); p == nil || p.key != key {
			if p = l.parts[key]; p == nil {
				// Revoked since the poll (assigned registers a partition
				// before it is fetched): its next owner sends these.
				continue
			}
		}
		e := &entry{offset: r.Offset, epoch: r.LeaderEpoch}
		p.entries = append(p.entries, e)
		// What routing and the ledger need; prepare decodes the rest and
		// encodes it for Heap. ev's strings share r's bytes, which its
		// batch reuses once recycled.
		ev, err := l.cfg.Codec.RouteView(r.Value)
		if err != nil {
			dead, deadEntries = append(dead, l.deadLetter(r, "undecodable: "+err.Error())), append(deadEntries, e)
			continue
		}
		src := l.source(ev.SourceID)
		if src == nil {
			dead, deadEntries = append(dead, l.deadLetter(r, "unknown source "+ev.SourceID)), append(deadEntries, e)
			continue
		}
		qd := &queued{}
		keys := ev.ID + ev.Identity // one copy for both
		qd.it = item{e: e, p: p, src: src, at: ev.Time.UnixMilli(),
			identity: keys[len(ev.ID):], name: l.intern(ev.Name), id: keys[:len(ev.ID)]}
		l.compact(r, &qd.it, qd.hdrs[:0])
		if url := src.HeapURL(l.cfg.HeapURL); q == nil || q.key.app != ev.AppID || q.key.url != url {
			k := batchKey{url: url, app: l.intern(ev.AppID)}
			if q = l.queues[k]; q == nil {
				q = &queue{key: k, wake: make(chan struct{}, 1), max: l.queueMax(src)}
				l.queues[k] = q
				l.wg.Add(1)
				go l.work(ctx, q)
			}
		}
		// Its batch's buffer is reused once all its records are recycled:
		// nothing may point into it after (ev does; a dead letter too: kept).
		r.Recycle()
		q.items = append(q.items, &qd.it)
		p.apps[q]++
		q.poke()
	}
}

// source returns the configured source with id, or nil. Caller holds mu.
func (l *loop) source(id string) *source.Source {
	if src, ok := l.sources[id]; ok {
		return src
	}
	src, ok := l.cfg.Sources.Get(id)
	if !ok {
		return nil
	}
	l.sources[src.ID] = &src
	return &src
}

// intern returns app ids and event names as one string each, not sharing
// a record's bytes: a handful of them, every record naming one. Caller
// holds mu.
func (l *loop) intern(app string) string {
	if s, ok := l.apps[app]; ok {
		return s
	}
	s := strings.Clone(app)
	if len(l.apps) < 4096 {
		l.apps[s] = s
	}
	return s
}

// item is one queued event. It keeps a compact copy of its record (key,
// value and headers in one allocation, for its request and a dead letter),
// not the polled record, which would keep its whole fetched batch in
// memory, and the few fields routing, pacing, the ledger and the counts
// read: prepare encodes a request's events when it builds it, so a backlog
// costs its records and no more.
type item struct {
	e          *entry
	p          *partition
	src        *source.Source
	key, value []byte
	hdrs       []kgo.RecordHeader
	identity   string
	name       string // the Heap event's
	id         string // the event id: Heap's idempotency key
	json       []byte // the Heap event, while prepared
	at         int64  // the Mailchimp event's time, Unix ms
	received   int64  // ingress receipt, Unix ms (set by prepare)
}

// record is the item's record again, for a dead letter.
func (it *item) record() *kgo.Record {
	return &kgo.Record{Topic: it.p.key.topic, Partition: it.p.key.part, Offset: it.e.offset, LeaderEpoch: it.e.epoch,
		Key: it.key, Value: it.value, Headers: it.hdrs}
}

// queued is a queued record's item and its headers, in one allocation.
// Its entry is apart: an entry waits for the partition's commit long after
// its event is done, and must not keep the rest alive meanwhile.
type queued struct {
	it   item
	hdrs [3]kgo.RecordHeader // heap.events records have three
}

// compact copies what a queued record needs (its key, value and headers,
// for the request and a dead letter) into it: the bytes in one allocation,
// the headers in hdrs when they fit. Caller holds mu.
func (l *loop) compact(r *kgo.Record, it *item, hdrs []kgo.RecordHeader) {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		i := len(buf)
		buf = append(buf, b...)
		return buf[i:len(buf):len(buf)]
	}
	it.key, it.value = cp(r.Key), cp(r.Value)
	if len(r.Headers) > 0 {
		if len(r.Headers) <= cap(hdrs) {
			it.hdrs = hdrs[:len(r.Headers)]
		} else {
			it.hdrs = make([]kgo.RecordHeader, len(r.Headers))
		}
		for i, h := range r.Headers {
			k, ok := l.headerKeys[h.Key]
			if !ok && len(l.headerKeys) < 64 {
				k = strings.Clone(h.Key)
				l.headerKeys[k] = k
			} else if !ok {
				k = strings.Clone(h.Key)
			}
			it.hdrs[i] = kgo.RecordHeader{Key: k, Value: cp(h.Value)}
		}
	}
}
