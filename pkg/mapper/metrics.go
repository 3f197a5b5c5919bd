package mapper

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
)

// tally counts a transaction's output records by what its metrics say, so
// a committed transaction adds each counter once, not once a record.
type tally struct {
	n     map[string]*tallied // by topic, source and kind or event name
	key   []byte
	total int
}

type tallied struct {
	topic, source, what string
	n                   int
}

func (t *tally) add(topics kafka.Topics, r *kgo.Record) {
	t.total++
	var source, what []byte
	switch r.Topic {
	case topics.RawDLQ:
		source, what = kafka.HeaderBytes(r, kafka.HeaderSource), kafka.HeaderBytes(r, kafka.HeaderKind)
	case topics.Events, topics.Pending, topics.EventsDLQ:
		source, what = kafka.HeaderBytes(r, kafka.HeaderSource), kafka.HeaderBytes(r, kafka.HeaderEventName)
	default:
		return
	}
	t.key = append(append(append(append(append(t.key[:0], r.Topic...), 0), source...), 0), what...)
	if e := t.n[string(t.key)]; e != nil { // a lookup by string(bytes) does not copy
		e.n++
		return
	}
	if t.n == nil {
		t.n = map[string]*tallied{}
	}
	t.n[string(t.key)] = &tallied{topic: r.Topic, source: string(source), what: string(what), n: 1}
}

// count adds a committed transaction's tally to the metrics.
func (m *loop) count(ctx context.Context, t tally) {
	for _, k := range t.n {
		n := k.n
		switch k.topic {
		case m.cfg.Topics.RawDLQ:
			m.cfg.Metrics.Add(metrics.MapperRawDead, float64(n), k.source, k.what)
			m.deadLettered(ctx, k.source, "unparseable", n)
		case m.cfg.Topics.Events:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "heap")
		case m.cfg.Topics.Pending:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "pending")
		case m.cfg.Topics.EventsDLQ:
			m.cfg.Metrics.Add(metrics.MapperEvents, float64(n), k.source, k.what, "dead_lettered")
			m.deadLettered(ctx, k.source, "identity_too_long", n)
		}
	}
}

// deadLettered counts a dead letter for the status page; a count that Redis
// misses is not worth failing a committed batch.
func (m *loop) deadLettered(ctx context.Context, source, reason string, n int) {
	if m.cfg.Status == nil {
		return
	}
	if err := m.cfg.Status.DeadLettered(ctx, source, reason, n); err != nil {
		m.cfg.Log.Debug("status count failed", zap.Error(err))
	}
}
