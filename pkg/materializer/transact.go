package materializer

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
)

// transact moves the chosen waiting events of the given addresses out of
// pending: route returns where an event goes (nil: it stays) and the
// dead-letter reason class when it is a dead letter.
func (m *Materializer) transact(ctx context.Context, app string, keys map[string]string,
	route func(events.Event, pending.Entry) (*kgo.Record, string, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*kgo.Record
	moved := map[string][]string{}      // email key -> event ids
	dead := map[[2]string]int{}         // source, reason -> count
	sent := map[string]map[string]int{} // source -> event name -> count
	for k := range keys {
		entries, err := m.idx.Get(ctx, app, k)
		if err != nil {
			return err
		}
		for _, en := range entries {
			e, err := m.cfg.Codec.Decode(en.Value)
			if errors.Is(err, events.ErrSchemaUnavailable) {
				m.cfg.Log.Warn("pending entry left in place while its schema cannot be fetched", zap.Error(err))
				continue
			}
			if err != nil {
				// Indexed by a build that read its schema (before a
				// rollback, say): moved like a record index cannot decode.
				key := pendingKey(app, k, en.EventID)
				reason := "undecodable: " + err.Error()
				m.cfg.Log.Warn("dead-lettering undecodable pending entry", zap.String("reason", reason))
				out = append(out, &kgo.Record{Topic: m.cfg.Topics.EventsDLQ, Key: key, Value: en.Value, Headers: []kgo.RecordHeader{
					{Key: kafka.HeaderEventID, Value: []byte(en.EventID)},
					{Key: kafka.HeaderReason, Value: []byte(reason)},
					{Key: kafka.HeaderOrigin, Value: []byte(m.cfg.Topics.Pending)},
				}}, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: key})
				moved[k] = append(moved[k], en.EventID)
				continue
			}
			r, reason, err := route(e, en)
			if err != nil {
				return err
			}
			if r == nil {
				continue
			}
			out = append(out, r, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: e.PendingKey()})
			moved[k] = append(moved[k], en.EventID)
			if reason != "" {
				dead[[2]string{e.SourceID, reason}]++
			} else {
				if sent[e.SourceID] == nil {
					sent[e.SourceID] = map[string]int{}
				}
				sent[e.SourceID][e.Name]++
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	if err := m.produce(ctx, out); err != nil {
		return err
	}
	for k, ids := range moved {
		gone, err := m.forget(ctx, app, k, ids)
		if err != nil {
			return err
		}
		m.countRemoved(ctx, gone)
	}
	for sr, n := range dead {
		if m.cfg.Status != nil {
			if err := m.cfg.Status.DeadLettered(ctx, sr[0], sr[1], n); err != nil {
				m.cfg.Log.Debug("status count failed", zap.Error(err))
			}
		}
	}
	for src, byName := range sent {
		for name, n := range byName {
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), src, name, "released")
		}
	}
	m.cfg.Log.Info("pending events moved", zap.String("app", app), zap.Int("events", len(out)/2), zap.Int("addresses", len(moved)))
	return nil
}

// forget removes released or expired events from the index. Their events and
// tombstones are committed, so it keeps trying while Redis fails: an entry
// left behind would be sent a second time by the retried batch or the next
// sweep, before its tombstone is consumed.
func (m *Materializer) forget(ctx context.Context, app, emailKey string, ids []string) ([]pending.Entry, error) {
	// Shutting down, it gives up: the committed tombstones remove them when
	// consumed.
	return retry.Value(ctx, m.redisRetry("removing moved events from the index failed; will retry"), func() ([]pending.Entry, error) {
		return m.idx.Remove(ctx, app, emailKey, ids...)
	})
}
