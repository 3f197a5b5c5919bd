package emitter

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
)

// skipDelivered finishes what the ledger says Heap already has of batch,
// and returns the rest, or false when ctx ended first.
func (l *loop) skipDelivered(ctx context.Context, k batchKey, batch []*item) ([]*item, bool) {
	if l.cfg.Ledger == nil {
		return batch, true
	}
	var seen map[string]bool
	keys := ledgerKeys(batch)
	if !l.retry(ctx, "ledger lookup", func() (err error) { seen, err = l.cfg.Ledger.Delivered(ctx, k.app, keys); return err }) {
		return nil, false
	}
	var skipped []*entry
	batch = slices.DeleteFunc(batch, func(it *item) bool {
		if seen[it.id] {
			l.cfg.Metrics.Inc(metrics.EmitterEvents, k.app, it.name, "already_delivered")
			skipped = append(skipped, it.e)
			return true
		}
		return false
	})
	l.finish(skipped)
	return batch, true
}

// record notes a sent batch in the ledger and the counts, marks its
// delivered events done and dead-letters what Heap refused.
func (l *loop) record(ctx context.Context, k batchKey, s sentBatch) {
	// Heap has these events: note them even while shutting down.
	noteCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if l.cfg.Ledger != nil && len(s.delivered) > 0 {
		// Best effort: Heap's idempotency key still guards a resend.
		if err := l.cfg.Ledger.Record(noteCtx, k.app, ledgerKeys(s.delivered)); err != nil {
			l.cfg.Log.Warn("ledger record failed", zap.String("app", k.app), zap.Error(err))
		}
	}
	// One counter update per event name, not per event.
	byName := map[string]int{}
	for _, it := range s.delivered {
		byName[it.name]++
		l.cfg.Metrics.Latency(time.UnixMilli(it.at), time.UnixMilli(it.received), s.at)
	}
	for name, n := range byName {
		l.cfg.Metrics.Add(metrics.EmitterEvents, float64(n), k.app, name, "delivered")
	}
	l.recordDelivered(noteCtx, s.delivered, s.at)
	l.finish(entries(s.delivered))
	if len(s.dead) > 0 {
		l.deadLettered(ctx, k, s.dead) // false: ctx ended, they stay uncommitted
	}
}

// recordDelivered counts delivered events per source and event name for the
// status page. Best effort: a lost count never holds back delivery.
func (l *loop) recordDelivered(ctx context.Context, delivered []*item, at time.Time) {
	if l.cfg.Status == nil || len(delivered) == 0 {
		return
	}
	per := map[string]map[string]int{}
	for _, it := range delivered {
		if per[it.src.ID] == nil {
			per[it.src.ID] = map[string]int{}
		}
		per[it.src.ID][it.name]++
	}
	for src, counts := range per {
		if err := l.cfg.Status.Delivered(ctx, src, counts, at); err != nil {
			l.cfg.Log.Warn("status: record delivered failed", zap.String("source", src), zap.Error(err))
		}
	}
}

// recordRejected counts the events Heap rejected, per source.
func (l *loop) recordRejected(ctx context.Context, dead []deadItem) {
	if l.cfg.Status == nil {
		return
	}
	per := map[string]int{}
	for _, d := range dead {
		per[d.source]++
	}
	for src, n := range per {
		if err := l.cfg.Status.DeadLettered(ctx, src, status.ReasonHeapRejected, n); err != nil {
			l.cfg.Log.Warn("status: record dead letters failed", zap.String("source", src), zap.Error(err))
		}
	}
}

func ledgerKeys(items []*item) []ledger.Key {
	keys := make([]ledger.Key, len(items))
	for i, it := range items {
		keys[i] = ledger.Key{ID: it.id, Time: time.UnixMilli(it.at)}
	}
	return keys
}
