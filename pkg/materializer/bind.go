package materializer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
)

// bind applies one heap.identities mapping and returns every address that
// now has an identity: the address itself and those inheriting from it.
func (m *Materializer) bind(ctx context.Context, mp identity.Mapping) (map[string]string, error) {
	ident := mp.Identity
	if mp.AliasOf != "" {
		found, err := m.ids.Resolve(ctx, mp.App, []string{mp.AliasOf})
		if err != nil {
			return nil, err
		}
		if ident = found[mp.AliasOf]; ident == "" {
			// The old address's identity is not known yet: its arrival
			// carries over then.
			return nil, m.ids.AddAlias(ctx, mp.App, mp.AliasOf, mp.EmailKey)
		}
	}
	bound := map[string]string{mp.EmailKey: ident}
	// Follow aliases a few hops: an address changed twice inherits too.
	next := []string{mp.EmailKey}
	for hop := 0; hop < 4 && len(next) > 0; hop++ {
		var more []string
		for _, k := range next {
			as, err := m.ids.Aliases(ctx, mp.App, k)
			if err != nil {
				return nil, err
			}
			for _, a := range as {
				if _, seen := bound[a]; !seen {
					bound[a] = ident
					more = append(more, a)
				}
			}
		}
		next = more
	}
	if err := m.ids.PutMany(ctx, mp.App, bound); err != nil {
		return nil, err
	}
	return bound, nil
}

// index applies one heap.events.pending record: an event to the index, a
// tombstone out of it.
func (m *Materializer) index(ctx context.Context, r *kgo.Record) (app, emailKey string, added bool, err error) {
	if r.Value == nil {
		app, ek, id, ok := splitPendingKey(r.Key)
		if !ok {
			return "", "", false, nil
		}
		gone, err := m.idx.Remove(ctx, app, ek, id)
		if err != nil {
			return "", "", false, err
		}
		m.countRemoved(ctx, gone)
		return app, ek, false, nil
	}
	if err := m.cfg.Codec.Learn(ctx, r.Value); err != nil {
		return "", "", false, m.undecodable(ctx, r, err) // the registry is unavailable: retried
	}
	e, err := m.cfg.Codec.Decode(r.Value)
	if err != nil {
		return "", "", false, m.undecodable(ctx, r, err)
	}
	added, err = m.idx.Add(ctx, e.AppID, e.EmailKey, pending.Entry{EventID: e.ID, Since: since(r, e), Value: r.Value})
	if err != nil {
		return "", "", false, err
	}
	if added {
		m.addPending(ctx, e.SourceID, 1)
	}
	return e.AppID, e.EmailKey, added, nil
}

// undecodable moves a heap.events.pending record that no schema this build
// reads decodes (an unknown fingerprint, a registry id whose schema cannot
// be read as the current one, damaged bytes) to heap.events.dlq with the
// reason, and tombstones it in pending, in one transaction, as expire
// moves an event: it is not dropped, and once a build reads its schema,
// `ctl redrive` sends it back. A registry that cannot be asked is not the
// record's fault: the error is returned and the batch retried.
func (m *Materializer) undecodable(ctx context.Context, r *kgo.Record, decodeErr error) error {
	if errors.Is(decodeErr, events.ErrSchemaUnavailable) {
		return fmt.Errorf("materializer: pending event at offset %d: %w", r.Offset, decodeErr)
	}
	reason := "undecodable: " + decodeErr.Error()
	m.cfg.Log.Warn("dead-lettering undecodable pending event", zap.String("reason", reason),
		zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	recs := []*kgo.Record{kafka.DeadLetter(r, m.cfg.Topics.EventsDLQ, reason)}
	if len(r.Key) > 0 { // a compacted topic's records have keys; a tombstone needs one
		recs = append(recs, &kgo.Record{Topic: m.cfg.Topics.Pending, Key: r.Key})
	}
	m.mu.Lock()
	err := m.produce(ctx, recs)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if src := kafka.Header(r, kafka.HeaderSource); src != "" && m.cfg.Status != nil {
		if err := m.cfg.Status.DeadLettered(ctx, src, reasonUndecodable, 1); err != nil {
			m.cfg.Log.Debug("status count failed", zap.Error(err))
		}
	}
	return nil
}

// reasonUndecodable is the status page's class of a pending event that
// does not decode.
const reasonUndecodable = "unparseable"

func since(r *kgo.Record, e events.Event) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, kafka.Header(r, HeaderPendingSince)); err == nil {
		return t
	}
	if !e.Lineage.ReceivedAt.IsZero() {
		return e.Lineage.ReceivedAt
	}
	return r.Timestamp
}
