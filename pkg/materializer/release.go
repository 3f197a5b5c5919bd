package materializer

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/route"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// release sends the waiting events of each address with its identity to
// heap.events, and tombstones them in heap.events.pending, in one
// transaction; the index forgets them once it committed.
func (m *Materializer) release(ctx context.Context, app string, idents map[string]string) error {
	if len(idents) == 0 {
		return nil
	}
	return m.transact(ctx, app, idents, func(e events.Event, en pending.Entry) (*kgo.Record, string, error) {
		e.Identity = idents[e.EmailKey]
		r := route.Record(m.cfg.Topics, m.cfg.Codec, e)
		if r.Topic == m.cfg.Topics.EventsDLQ {
			return r, "identity_too_long", nil
		}
		return r, "", nil
	})
}

// expire dead-letters the events of addresses that waited longer than their
// source's pending_max_age.
func (m *Materializer) expire(ctx context.Context, app string, emailKeys []string) error {
	now := m.cfg.Now()
	keys := map[string]string{}
	for _, k := range emailKeys {
		keys[k] = ""
	}
	return m.transact(ctx, app, keys, func(e events.Event, en pending.Entry) (*kgo.Record, string, error) {
		maxAge := source.DefaultPendingMaxAge
		if src, ok := m.cfg.Sources.Get(e.SourceID); ok {
			maxAge = src.PendingMaxAge
		}
		if now.Sub(en.Since) < maxAge {
			return nil, "", nil
		}
		reason := fmt.Sprintf("unmatched: no Heap identity for this email after %s", maxAge)
		return &kgo.Record{Topic: m.cfg.Topics.EventsDLQ, Key: e.PendingKey(), Value: en.Value, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(e.SourceID)},
			{Key: kafka.HeaderEventID, Value: []byte(e.ID)},
			{Key: kafka.HeaderEventName, Value: []byte(e.Name)},
			{Key: kafka.HeaderReason, Value: []byte(reason)},
			{Key: kafka.HeaderOrigin, Value: []byte(m.cfg.Topics.Pending)},
		}}, "unmatched", nil
	})
}
