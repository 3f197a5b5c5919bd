package emitter

import (
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// queueAhead is how much of a paced app's rate its queue holds: enough for
// its next requests while its partitions resume and refill (a poll or two),
// with the queue resuming at half. Holding more only costs memory: the
// pacer sends no faster.
const queueAhead = 12 * time.Second

// queueMax is how many events an app's queue holds before its partitions
// pause: MaxQueued, or for a paced app queueAhead of its rate and at least
// four full requests.
func (l *loop) queueMax(src *source.Source) int {
	if l.cfg.Pacer == nil {
		return l.cfg.MaxQueued
	}
	perMin, burst := pacing.Budget(src.AppEventsPerMinute)
	ahead := int(float64(perMin) * queueAhead.Seconds() / l.cfg.PacePeriod.Seconds())
	return min(l.cfg.MaxQueued, max(4*min(burst, l.cfg.MaxBatch), ahead))
}

// flowControl pauses the partitions holding events of apps whose queue is
// full, until it drained to half. Apps share partitions, and a fetch brings
// each app the share its partitions hold, which is not the share it sends:
// pausing whenever the fullest app is full would starve the emptiest one,
// whose queue runs short. So a partition also holding events of an app that
// has drained below half stays fetched, letting the full apps grow to twice
// their bound; only that stops it. Caller holds mu.
func (l *loop) flowControl() {
	for _, q := range l.queues {
		switch n := len(q.items) + q.inflight; {
		case n >= q.max && !q.paused:
			q.paused = true
			l.cfg.Log.Info("app backlog full; pausing its partitions", zap.String("app", q.key.app), zap.Int("queued", n))
		case n <= q.max/2 && q.paused:
			q.paused = false
			l.cfg.Log.Info("app backlog drained; resuming", zap.String("app", q.key.app), zap.Int("queued", n))
		}
	}
	want := map[tp]bool{}
	for key, p := range l.parts {
		full, needy, over := false, false, false
		for q := range p.apps {
			n := len(q.items) + q.inflight
			full = full || q.paused
			needy = needy || n < q.max/2
			over = over || n >= 2*q.max
		}
		if over || full && !needy {
			want[key] = true
		}
	}
	// Every assigned partition held: stop polling instead of pausing them.
	// kgo drops a paused partition's buffered records, to fetch them again
	// once resumed, so a backlog read that way is fetched and decoded more
	// than once. Not polling keeps them (one fetch) and fetches no more.
	stall := len(want) > 0 && len(want) == len(l.parts)
	if stall {
		clear(want)
	}
	l.setPaused(want)
	if !stall {
		l.wakeStalled() // were it stalled, it polls again now
	}
	l.stall = stall
}

// setPaused pauses the partitions in want and resumes the others. Caller
// holds mu.
func (l *loop) setPaused(want map[tp]bool) {
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for key := range want {
		if !l.paused[key] {
			pause[key.topic] = append(pause[key.topic], key.part)
		}
	}
	for key := range l.paused {
		if !want[key] {
			resume[key.topic] = append(resume[key.topic], key.part)
		}
	}
	if len(pause) > 0 {
		l.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		l.cl.ResumeFetchPartitions(resume)
	}
	l.paused = want
}

// wakeStalled has a stalled poll loop look again now, not after PollWait:
// the partitions changed. Caller holds mu.
func (l *loop) wakeStalled() {
	if l.stall {
		select {
		case l.unstall <- struct{}{}:
		default:
		}
	}
}

// pausedFor reports whether a paused partition has carried q's events.
// Caller holds mu.
func (l *loop) pausedFor(q *queue) bool {
	if l.stall {
		return true
	}
	for key := range l.paused {
		if p := l.parts[key]; p != nil && p.apps[q] > 0 {
			return true
		}
	}
	return false
}
