package emitter

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// assigned registers the partitions assigned, with or without records yet:
// flowControl stalls polling only when every one of them is held.
func (l *loop) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, parts := range m {
		for _, part := range parts {
			key := tp{topic, part}
			if l.parts[key] == nil {
				l.parts[key] = &partition{key: key, apps: map[*queue]int{}}
			}
		}
	}
	l.wakeStalled()
}

// revoked marks what was delivered on the revoked partitions, commits it,
// and abandons their queued events: the next owner sends them.
func (l *loop) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	l.revoke(ctx, cl, m)
}

// revoke is revoked, for any client.
func (l *loop) revoke(ctx context.Context, cl client, m map[string][]int32) {
	l.drop(m, true)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		l.cfg.Log.Warn("commit on revoke failed; delivered events may be sent again", zap.Error(err))
	}
}

// lost abandons the lost partitions' queued events, committing nothing:
// the group gave them to another member already.
func (l *loop) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) { l.drop(m, false) }

// drop forgets the partitions of m (after marking their done prefix, if
// mark) and abandons their queued events; it resumes those paused.
func (l *loop) drop(m map[string][]int32, mark bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	resume := map[string][]int32{}
	for topic, parts := range m {
		for _, part := range parts {
			key := tp{topic, part}
			if l.paused[key] {
				// kgo keeps a partition paused across a revoke: were it
				// assigned back, nothing here would resume it.
				resume[topic] = append(resume[topic], part)
				delete(l.paused, key)
			}
			p := l.parts[key]
			if p == nil {
				continue
			}
			if mark {
				l.markPrefix(p)
			}
			p.gone = true
			delete(l.parts, key)
		}
	}
	if len(resume) > 0 {
		l.cl.ResumeFetchPartitions(resume)
	}
	for _, q := range l.queues {
		q.items = slices.DeleteFunc(q.items, func(it *item) bool { return it.p.gone })
	}
	l.wakeStalled()
}
