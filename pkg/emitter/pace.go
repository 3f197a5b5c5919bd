package emitter

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/retry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// pace reserves the batch in the app's and its identities' budgets for one
// send time and waits until then, so the batch is sent as both budgets
// counted it. The app's budget is reserved ahead (see package pacing): the
// worker comes back late without losing any of it.
func (l *loop) pace(ctx context.Context, k batchKey, src *source.Source, batch []*item) bool {
	if l.cfg.Pacer == nil {
		return true
	}
	ids := l.identities(k, src)
	per := map[string]int{}
	for _, it := range batch {
		per[it.identity]++
	}
	for {
		// The identities first: waiting for them spends no app budget.
		if wait := ids.Wait(per, time.Now()); wait > 0 {
			l.cfg.Log.Debug("identity budget spent; waiting", zap.String("app", k.app), zap.Duration("wait", wait))
			l.cfg.Metrics.Add(metrics.PacingWait, wait.Seconds(), k.app, "identity")
			if !retry.Sleep(ctx, wait) {
				return false
			}
			continue
		}
		var wait time.Duration
		if !l.retry(ctx, "app pacing", func() (err error) {
			wait, err = l.cfg.Pacer.Reserve(ctx, k.app, src.AppEventsPerMinute, len(batch))
			return err
		}) {
			return false
		}
		at := time.Now().Add(wait)
		// The identities' budgets only grew since Wait, so this fits but
		// for another worker of the same app and identities (none: one
		// worker per app and Heap URL). If not, the app's reservation is
		// left unused: under the limit, never over it.
		idWait := ids.Take(per, at)
		if wait > 0 {
			l.cfg.Log.Debug("app budget spent; waiting", zap.String("app", k.app), zap.Duration("wait", wait))
			l.cfg.Metrics.Add(metrics.PacingWait, wait.Seconds(), k.app, "app")
		}
		if !retry.Sleep(ctx, time.Until(at)+idWait) {
			return false
		}
		if idWait == 0 {
			return true
		}
	}
}

// identities is the identity budget of one worker's app.
func (l *loop) identities(k batchKey, src *source.Source) *pacing.Identities {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.idents[k]
	if ids == nil {
		ids = pacing.NewIdentities(src.IdentityEventsPerMinute, l.cfg.PacePeriod)
		l.idents[k] = ids
	}
	return ids
}
