package emitter

import (
	"github.com/twmb/franz-go/pkg/kgo"
)

type tp struct {
	topic string
	part  int32
}

// entry is one polled record's place in its partition, for the commit:
// done once Heap accepted its event or it was dead-lettered.
type entry struct {
	offset int64
	epoch  int32
	done   bool
}

// partition tracks the polled, not yet committable records of one partition.
type partition struct {
	key     tp
	entries []*entry       // offset order
	apps    map[*queue]int // events polled, per app queue
	gone    bool           // revoked: its queued items are abandoned
}

// markAll marks, per partition, the contiguous prefix of done records for
// the next autocommit. Caller holds mu.
func (l *loop) markAll() {
	for _, p := range l.parts {
		l.markPrefix(p)
	}
}

func (l *loop) markPrefix(p *partition) {
	i := 0
	for i < len(p.entries) && p.entries[i].done {
		i++
	}
	if i == 0 {
		return
	}
	last := p.entries[i-1]
	l.cl.MarkCommitRecords(&kgo.Record{Topic: p.key.topic, Partition: p.key.part, Offset: last.offset, LeaderEpoch: last.epoch})
	// Clear what the slice no longer shows: the array would keep the done
	// records (and their fetched batches) until it is next grown.
	clear(p.entries[:i])
	p.entries = p.entries[i:]
}

// finish marks entries done.
func (l *loop) finish(es []*entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range es {
		e.done = true
	}
}

func entries(items []*item) []*entry {
	es := make([]*entry, len(items))
	for i, it := range items {
		es[i] = it.e
	}
	return es
}
