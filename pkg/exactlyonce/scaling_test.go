package exactlyonce_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/exactlyonce"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestExactlyOnceScaling runs 3 mapper and 2 emitter processes as members of
// their groups (cooperative-sticky, static membership) on one broker while
// members join, leave with SIGTERM, crash with SIGKILL and come back, with
// events flowing all the while.
func TestExactlyOnceScaling(t *testing.T) {
	testsupport.Integration(t, "runs mappers and emitters as child processes")
	const n = 3000
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.Prefix(t)
	topics := ensureTopics(t, brokers, prefix, 6)
	sourcesFile, sources := writeSources(t, prefix)
	sink := heaptest.NewServer(t)
	base := []string{
		"KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"TOPIC_PREFIX=" + prefix,
		"REDIS_URL=" + redistest.URL(t),
		"HEAP_API_URL=" + sink.URL,
		"HEAP_TIMEOUT=5s",
		"SOURCES_FILE=" + sourcesFile,
		"ADMIN_ADDR=127.0.0.1:0",
	}
	// Each instance keeps its id across restarts, as a StatefulSet pod does.
	envOf := func(id string) []string { return append(append([]string(nil), base...), "INSTANCE_ID="+id) }
	in := inputs(n, false)
	expected, err := exactlyonce.Expected(sources, in)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := events.NewCodec()
	ctx, cancel := context.WithCancel(context.Background())
	dead := collect(ctx, t, brokers, topics.EventsDLQ, codec)
	watch := watchGroups(ctx, t, brokers, prefix+"mapper", prefix+"emitter")
	defer cancel()

	var all []*proc // every process ever started, for the counts
	start := func(role, id string) *proc {
		p := startProc(t, role, envOf(id))
		all = append(all, p)
		return p
	}
	m1, e1 := start("mapper", "m1"), start("emitter", "e1")
	var m2, m3, e2 *proc

	prod, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	began := time.Now()
	var churn []string
	const chunks = 12
	for c := range chunks {
		produceChunk(t, prod, c, rawRecords(topics.Raw, in[c*len(in)/chunks:(c+1)*len(in)/chunks]))
		step := func(s string) { churn = append(churn, s) }
		switch c {
		case 1: // scale out to 3 + 2
			m2, e2 = start("mapper", "m2"), start("emitter", "e2")
			step("join m2, e2")
		case 2:
			m3 = start("mapper", "m3")
			// The churn starts once all five share the work.
			watch.await(t, 3, 2)
			step("join m3; 3 mappers and 2 emitters hold partitions")
		case 4: // m2 leaves for good: a static member, its partitions move to m1 and m3 after the session timeout
			go m2.stopAndWait()
			step("SIGTERM m2 (gone)")
		case 5:
			m3.kill()
			go e2.stopAndWait()
			step("SIGKILL m3 (restarts), SIGTERM e2")
		case 7:
			<-e2.done // one live instance per id
			e2 = start("emitter", "e2")
			e1.kill()
			step("restart e2, SIGKILL e1 (restarts)")
		case 9:
			m1.kill()
			step("SIGKILL m1 (restarts)")
		}
		time.Sleep(400 * time.Millisecond)
	}

	deadline := time.Now().Add(3 * time.Minute)
	var rep exactlyonce.Report
	for {
		rep = exactlyonce.Check(expected, delivered(sink.Sink), dead.all())
		if len(rep.Missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(began)
	time.Sleep(time.Second) // a late double would show now
	cancel()
	var stopping sync.WaitGroup
	for _, p := range all {
		stopping.Go(p.stopAndWait)
	}
	stopping.Wait()
	rep = exactlyonce.Check(expected, delivered(sink.Sink), dead.all())
	st := sink.Stats()
	starts, kills, hung := map[string]int{}, map[string]int{}, 0
	for _, p := range all {
		starts[p.role] += p.starts
		kills[p.role] += p.kills
		hung += p.hung
	}
	mappers, emitters := watch.max()
	writeReport(t, map[string]any{
		"test": t.Name(), "kafka": kafkatest.Name(),
		"inputs": len(in), "expected": rep.Expected, "delivered": rep.Delivered, "dead_lettered": rep.DeadLettered,
		"resent_then_deduplicated_by_heap": st.Duplicates, "heap_requests": st.Requests,
		"mapper_starts": starts["mapper"], "mapper_kills": kills["mapper"],
		"emitter_starts": starts["emitter"], "emitter_kills": kills["emitter"],
		"sigterm_hung_30s": hung, "most_mappers_with_partitions": mappers, "most_emitters_with_partitions": emitters,
		"churn": churn, "seconds": elapsed.Round(100 * time.Millisecond).Seconds(), "ok": rep.OK(),
	})
	if !rep.OK() {
		t.Fatalf("exactly-once violated: %s", rep)
	}
	if rep.DeadLettered != 0 {
		t.Errorf("%d dead-lettered without a poison event", rep.DeadLettered)
	}
	// A SIGTERM ends the transaction in flight and the process; one still
	// running 30 s later (a close stuck behind a group rebalance) is a
	// shutdown bug even though the kill loses nothing.
	if hung != 0 {
		t.Errorf("%d SIGTERMed instances did not exit within 30 s", hung)
	}
	// The work was shared: at some point every instance held partitions.
	if mappers < 3 || emitters < 2 {
		t.Errorf("at most %d mappers and %d emitters held partitions at once, want 3 and 2", mappers, emitters)
	}
}

// groupWatch records the most members of each group that held partitions
// at one time.
type groupWatch struct {
	mu              sync.Mutex
	most            map[string]int
	mapper, emitter string
}

func watchGroups(ctx context.Context, t *testing.T, brokers []string, mapper, emitter string) *groupWatch {
	w := &groupWatch{most: map[string]int{}, mapper: mapper, emitter: emitter}
	cl, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if gs, err := adm.DescribeGroups(ctx, mapper, emitter); err == nil {
				for _, g := range gs {
					n := 0
					for _, m := range g.Members {
						if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 && len(a.Topics[0].Partitions) > 0 {
							n++
						}
					}
					w.mu.Lock()
					w.most[g.Group] = max(w.most[g.Group], n)
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { <-done; cl.Close() })
	return w
}

// await waits until the groups had that many members with partitions.
func (w *groupWatch) await(t *testing.T, mappers, emitters int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		m, e := w.max()
		if m >= mappers && e >= emitters {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute %d mappers and %d emitters hold partitions, want %d and %d", m, e, mappers, emitters)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *groupWatch) max() (mappers, emitters int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.most[w.mapper], w.most[w.emitter]
}
