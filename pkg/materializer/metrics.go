package materializer

import (
	"context"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
)

// countRemoved lowers the pending counts of the entries removed.
func (m *Materializer) countRemoved(ctx context.Context, gone []pending.Entry) {
	per := map[string]int64{}
	for _, en := range gone {
		if e, err := m.cfg.Codec.Decode(en.Value); err == nil {
			per[e.SourceID]++
		}
	}
	for src, n := range per {
		m.addPending(ctx, src, -n)
	}
}

func (m *Materializer) addPending(ctx context.Context, source string, n int64) {
	if m.cfg.Status == nil {
		return
	}
	if err := m.cfg.Status.AddPending(ctx, source, n); err != nil {
		m.cfg.Log.Debug("status count failed", zap.Error(err))
	}
}
