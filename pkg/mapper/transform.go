package mapper

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/route"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// mapped is one input record's outcome.
type mapped struct {
	rec    *kgo.Record
	source *source.Source // shared by a chunk's records of one source: Source is large
	res    mapping.Result
}

// transform maps a batch. It fails only with ErrDependency; bad records are
// dead-lettered in the output.
func (m *loop) transform(ctx context.Context, recs []*kgo.Record) ([]*kgo.Record, error) {
	if m.cfg.CacheReady != nil {
		ready, err := m.cfg.CacheReady(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDependency, err)
		}
		if !ready {
			return nil, fmt.Errorf("%w: the Redis cache is being rebuilt", ErrDependency)
		}
	}
	out, ok := m.mapAll(recs)
	defer m.clearEvents() // ok's events are encoded into the output by then
	// Identities and campaign titles are independent lookups (they set
	// different fields of the events): the identity pipelines run while the
	// campaign metadata is stored and titles are looked up.
	identErr := make(chan error, 1)
	go func() { identErr <- m.resolveIdentities(ctx, ok) }()
	if err := m.resolveCampaigns(ctx, ok); err != nil {
		<-identErr
		return nil, err
	}
	for _, mp := range ok {
		if c := mp.res.Campaign; c != nil {
			// Kafka is the truth, Redis the cache: the metadata goes to the
			// compacted topic in the same transaction.
			r, err := campaigns.Record(m.cfg.Topics.Campaigns, mp.source.ID, *c)
			if err != nil {
				<-identErr
				return nil, fmt.Errorf("mapper: %w", err)
			}
			out = append(out, r)
		}
		if ch := mp.res.EmailChange; ch != nil && !mp.source.JoinsOnIdentity() {
			// The new address inherits the old one's identity: recorded in
			// heap.identities, in this transaction, for the materializer.
			r, err := identity.Alias(mp.source.ID, mp.source.HeapAppID, ch.Old, ch.New, ch.At).Record(m.cfg.Topics.Identities)
			if err != nil {
				out = append(out, m.rawDead(mp.rec, err.Error()))
				continue
			}
			out = append(out, r)
		}
	}
	if err := <-identErr; err != nil {
		return nil, err
	}
	return append(out, m.encodeAll(ok)...), nil
}

// workers is how many goroutines map or encode n records: one per core,
// but not for batches too small to be worth the hand-off.
func (m *loop) workers(n int) int {
	if m.par > 0 {
		return min(m.par, max(1, n))
	}
	return max(1, min(runtime.GOMAXPROCS(0), n/256))
}

// chunks calls f on w contiguous ranges of [0, n) at once and waits.
func chunks(n, w int, f func(part, lo, hi int)) {
	if w <= 1 {
		f(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	for p := range w {
		lo, hi := p*n/w, (p+1)*n/w
		wg.Go(func() { f(p, lo, hi) })
	}
	wg.Wait()
}

// mapAll parses and maps recs on every core (the mapper is CPU-bound), and
// returns the raw dead letters and the mapped records, both in input order:
// the same output as mapping them one by one.
func (m *loop) mapAll(recs []*kgo.Record) ([]*kgo.Record, []mapped) {
	w := m.workers(len(recs))
	deads := make([][]*kgo.Record, w)
	oks := make([][]mapped, w)
	for len(m.evs) < w {
		m.evs = append(m.evs, nil)
	}
	chunks(len(recs), w, func(part, lo, hi int) {
		var dead []*kgo.Record
		ok := make([]mapped, 0, hi-lo) // mapped is large: grow it once
		// The chunk's events in one array, the last transaction's: its
		// events were encoded and cleared (transform) before this one maps.
		evs := m.evs[part][:0]
		if cap(evs) < hi-lo {
			evs = make([]events.Event, 0, (hi-lo)*5/4)
		}
		var lp lineageParser
		srcs := map[string]*source.Source{}
		for _, r := range recs[lo:hi] {
			rawID := kafka.HeaderBytes(r, kafka.HeaderSource)
			src, found := srcs[string(rawID)] // no copy to look up
			if !found {
				srcID := string(rawID)
				s, known := m.cfg.Sources.Get(srcID)
				if !known {
					dead = append(dead, m.rawDead(r, "unknown source "+srcID))
					continue
				}
				src = &s
				srcs[srcID] = src
			}
			lin := lp.lineage(r)
			res, grown, err := mapping.MapAppend(evs, src, lin.Kind, r.Value, lin)
			if err != nil {
				dead = append(dead, m.rawDead(r, err.Error()))
				continue
			}
			evs = grown
			ok = append(ok, mapped{rec: r, source: src, res: res})
		}
		m.evs[part] = evs
		deads[part], oks[part] = dead, ok
	})
	if w == 1 {
		return deads[0], oks[0]
	}
	return slices.Concat(deads...), slices.Concat(oks...)
}

// clearEvents drops the mapped events' references (to the polled records'
// bytes) once they are encoded, keeping their arrays for the next
// transaction.
func (m *loop) clearEvents() {
	for i, evs := range m.evs {
		clear(evs)
		m.evs[i] = evs[:0]
	}
}

// encodeAll encodes and routes the batch's events on every core, in order.
func (m *loop) encodeAll(batch []mapped) []*kgo.Record {
	at := make([]int, len(batch)+1) // batch[i]'s first event's index in out
	for i, mp := range batch {
		at[i+1] = at[i] + len(mp.res.Events)
	}
	out := make([]*kgo.Record, at[len(batch)])
	w := m.workers(len(batch))
	for len(m.arenas) < w {
		m.arenas = append(m.arenas, &arena{})
	}
	chunks(len(batch), w, func(part, lo, hi int) {
		a := m.arena(part, at[hi]-at[lo])
		for i := lo; i < hi; i++ {
			for j, e := range batch[i].res.Events {
				out[at[i]+j] = route.RecordIn(a, m.cfg.Topics, m.cfg.Codec, e)
			}
		}
	})
	return out
}

// rawDead dead-letters an input record as it came, with the reason.
func (m *loop) rawDead(r *kgo.Record, reason string) *kgo.Record {
	m.cfg.Log.Warn("dead-lettering raw record", zap.String("source", kafka.Header(r, kafka.HeaderSource)),
		zap.String("kind", kafka.Header(r, kafka.HeaderKind)), zap.String("reason", reason),
		zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	return kafka.DeadLetter(r, m.cfg.Topics.RawDLQ, reason)
}
