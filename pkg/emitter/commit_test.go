package emitter

import (
	"context"
	"iter"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMarkPrefix: whatever order a partition's records finish in, only the
// contiguous prefix of done ones is marked for commit, once, and the
// entries of that prefix are let go.
func TestMarkPrefix(t *testing.T) {
	type step struct {
		finish  []int64 // offsets done in this step
		marked  int64   // the last offset marked after it; -1: none yet
		pending int     // entries still held
	}
	cases := []struct {
		name    string
		offsets []int64 // the partition's polled records
		steps   []step
	}{
		{"in order", []int64{0, 1, 2, 3}, []step{
			{[]int64{0}, 0, 3}, {[]int64{1, 2}, 2, 1}, {[]int64{3}, 3, 0}}},
		{"out of order: nothing past the first not done", []int64{0, 1, 2, 3, 4}, []step{
			{[]int64{1, 3}, -1, 5}, {[]int64{0}, 1, 3}, {[]int64{4}, 1, 3}, {[]int64{2}, 4, 0}}},
		{"in reverse: all at once, when the first is", []int64{0, 1, 2}, []step{
			{[]int64{2}, -1, 3}, {[]int64{1}, -1, 3}, {[]int64{0}, 2, 0}}},
		{"offsets with gaps (transaction markers)", []int64{10, 11, 13, 16}, []step{
			{[]int64{11, 13}, -1, 4}, {[]int64{10}, 13, 1}, {[]int64{16}, 16, 0}}},
		{"nothing done", []int64{5, 6}, []step{{nil, -1, 2}, {nil, -1, 2}}},
		{"nothing new: not marked again", []int64{0, 1}, []step{
			{[]int64{0, 1}, 1, 0}, {nil, 1, 0}}},
	}
	key := tp{testTopic, 3}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := newTestLoop(t)
			tl.assigned(context.Background(), nil, map[string][]int32{testTopic: {key.part}})
			p := tl.parts[key]
			byOffset := map[int64]*entry{}
			for _, o := range c.offsets {
				byOffset[o] = &entry{offset: o, epoch: 7}
				p.entries = append(p.entries, byOffset[o])
			}
			last, advances := int64(-1), 0
			for i, st := range c.steps {
				var es []*entry
				for _, o := range st.finish {
					es = append(es, byOffset[o])
				}
				tl.finish(es)
				tl.mu.Lock()
				tl.markAll()
				tl.mu.Unlock()
				got, ok := tl.kafka.marked[key]
				if !ok {
					got = kgo.EpochOffset{Epoch: -1, Offset: -1}
				}
				if got.Offset != st.marked || len(p.entries) != st.pending {
					t.Errorf("step %d: marked %d with %d pending, want %d with %d", i, got.Offset, len(p.entries), st.marked, st.pending)
				}
				if ok && got.Epoch != 7 {
					t.Errorf("step %d: marked with leader epoch %d, want the record's (7)", i, got.Epoch)
				}
				if st.marked != last {
					last, advances = st.marked, advances+1
				}
			}
			if tl.kafka.marks != advances {
				t.Errorf("marked %d times, want once per advance (%d)", tl.kafka.marks, advances)
			}
		})
	}
}

// TestDrop: a revoked partition commits its done prefix, a lost one
// commits nothing; either way its state goes, its queued events are
// abandoned to its next owner, a pause on it is lifted, and the other
// partitions keep theirs.
func TestDrop(t *testing.T) {
	p0, p1 := tp{testTopic, 0}, tp{testTopic, 1}
	cases := []struct {
		name    string
		lost    bool // lost, not revoked
		drop    []int32
		marked  map[tp]int64
		commits int
		parts   []tp // still held
		queued  []tp // partitions of the events still queued
		paused  []tp
		resumed []tp
	}{
		{name: "revoked", drop: []int32{0}, marked: map[tp]int64{p0: 1}, commits: 1,
			parts: []tp{p1}, queued: []tp{p1}, resumed: []tp{p0}},
		{name: "lost", lost: true, drop: []int32{0}, marked: map[tp]int64{},
			parts: []tp{p1}, queued: []tp{p1}, resumed: []tp{p0}},
		{name: "revoked, not paused", drop: []int32{1}, marked: map[tp]int64{p1: 0}, commits: 1,
			parts: []tp{p0}, queued: []tp{p0, p0}, paused: []tp{p0}},
		{name: "lost, not paused", lost: true, drop: []int32{1}, marked: map[tp]int64{},
			parts: []tp{p0}, queued: []tp{p0, p0}, paused: []tp{p0}},
		{name: "both revoked", drop: []int32{0, 1}, marked: map[tp]int64{p0: 1, p1: 0}, commits: 1,
			resumed: []tp{p0}},
		{name: "one never assigned", drop: []int32{9}, marked: map[tp]int64{}, commits: 1,
			parts: []tp{p0, p1}, queued: []tp{p0, p0, p1}, paused: []tp{p0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := newTestLoop(t)
			ctx := context.Background()
			tl.assigned(ctx, nil, map[string][]int32{testTopic: {0, 1}})
			// Partition 0: offsets 0, 1 and 3 done, 2 and 4 queued;
			// partition 1: offset 0 done, 1 queued. Partition 0 paused.
			q := &queue{key: batchKey{app: "app-acme"}, wake: make(chan struct{}, 1)}
			tl.queues[q.key] = q
			for key, doneness := range map[tp][]bool{p0: {true, true, false, true, false}, p1: {true, false}} {
				p := tl.parts[key]
				for o, d := range doneness {
					e := &entry{offset: int64(o), done: d}
					p.entries = append(p.entries, e)
					if !d {
						q.items = append(q.items, &item{e: e, p: p})
						p.apps[q]++
					}
				}
			}
			tl.mu.Lock()
			tl.setPaused(map[tp]bool{p0: true})
			tl.mu.Unlock()
			before := map[tp]*partition{p0: tl.parts[p0], p1: tl.parts[p1]}

			m := map[string][]int32{testTopic: c.drop}
			if c.lost {
				tl.lost(ctx, nil, m)
			} else {
				tl.revoke(ctx, tl.kafka, m)
			}

			marked := map[tp]int64{}
			for k, eo := range tl.kafka.marked {
				marked[k] = eo.Offset
			}
			var queued []tp
			for _, it := range q.items {
				queued = append(queued, it.p.key)
			}
			slices.SortFunc(queued, cmpTP)
			got := []any{marked, tl.kafka.commits, sortedTPs(maps.Keys(tl.parts)), queued,
				sortedTPs(maps.Keys(tl.paused)), tl.kafka.resumed}
			want := []any{c.marked, c.commits, c.parts, c.queued, c.paused, c.resumed}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(tp{})); diff != "" {
				t.Errorf("marked, commits, held, queued, paused, resumed (-want +got):\n%s", diff)
			}

			// What the dropped partitions' events do later is not marked:
			// their next owner commits them.
			for _, p := range before {
				tl.finish(p.entries)
			}
			tl.mu.Lock()
			tl.markAll()
			tl.mu.Unlock()
			for _, part := range c.drop {
				if eo, ok := tl.kafka.marked[tp{testTopic, part}]; ok && eo.Offset != c.marked[tp{testTopic, part}] {
					t.Errorf("partition %d marked at %d after it was dropped", part, eo.Offset)
				}
			}
			// Assigned back, a partition starts afresh.
			tl.assigned(ctx, nil, m)
			for _, part := range c.drop {
				key := tp{testTopic, part}
				if p := tl.parts[key]; p == nil || p.gone || len(p.entries) != 0 || before[key] == p {
					t.Errorf("partition %d assigned back: %+v", part, p)
				}
			}
		})
	}
}

// TestCommitsDeliveredPrefix: through accept and the app workers, with one
// app's Heap down, each partition commits only up to its first event of
// that app; an undecodable record between is dead-lettered and passed.
// Once the app's Heap is back, its events are retried and every partition
// commits to its end, every event delivered once.
func TestCommitsDeliveredPrefix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tl := newTestLoop(t)
		tl.heap.setDown("app-acme", true)
		ctx, cancel := context.WithCancel(t.Context())
		tl.assigned(ctx, nil, map[string][]int32{testTopic: {0, 1}})
		var recs []*kgo.Record
		for i, src := range []string{"beta", "acme", "", "beta", "acme", "beta"} {
			if src == "" {
				recs = append(recs, &kgo.Record{Topic: testTopic, Partition: 0, Offset: int64(i), Value: []byte("not avro")})
				continue
			}
			recs = append(recs, tl.kafkaRecord(t, 0, int64(i), event(src, src+"-0-"+string(rune('0'+i)))))
		}
		for i := range 2 {
			recs = append(recs, tl.kafkaRecord(t, 1, int64(i), event("beta", "beta-1-"+string(rune('0'+i)))))
		}
		tl.accept(ctx, recs)
		marks := func() map[tp]int64 {
			tl.mu.Lock()
			tl.markAll()
			tl.mu.Unlock()
			m := map[tp]int64{}
			for k, eo := range tl.kafka.marked {
				m[k] = eo.Offset
			}
			return m
		}

		time.Sleep(10 * time.Second)
		synctest.Wait()
		p0, p1 := tp{testTopic, 0}, tp{testTopic, 1}
		if diff := cmp.Diff(map[tp]int64{p0: 0, p1: 1}, marks(), cmp.AllowUnexported(tp{})); diff != "" {
			t.Errorf("marked while acme is down (-want +got):\n%s", diff)
		}
		if n := len(tl.retries("heap track")); n < 5 {
			t.Errorf("acme's request tried again %d times in 10s", n)
		}

		tl.heap.setDown("app-acme", false)
		time.Sleep(2 * tl.cfg.MaxBackoff)
		synctest.Wait()
		if diff := cmp.Diff(map[tp]int64{p0: 5, p1: 1}, marks(), cmp.AllowUnexported(tp{})); diff != "" {
			t.Errorf("marked once acme is back (-want +got):\n%s", diff)
		}
		want := map[string]int{"beta-0-0": 1, "acme-0-1": 1, "beta-0-3": 1, "acme-0-4": 1, "beta-0-5": 1,
			"beta-1-0": 1, "beta-1-1": 1}
		if diff := cmp.Diff(want, tl.heap.accepted); diff != "" {
			t.Errorf("accepted (-want +got):\n%s", diff)
		}
		if dead := tl.kafka.dead(); len(dead) != 1 {
			t.Errorf("dead letters %v, want the undecodable record's", dead)
		}
		cancel()
		tl.wg.Wait()
	})
}

func cmpTP(a, b tp) int {
	if c := strings.Compare(a.topic, b.topic); c != 0 {
		return c
	}
	return int(a.part - b.part)
}

// sortedTPs is keys sorted, or nil.
func sortedTPs(keys iter.Seq[tp]) []tp {
	s := slices.SortedFunc(keys, cmpTP)
	if len(s) == 0 {
		return nil
	}
	return s
}
