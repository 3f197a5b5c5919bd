package mapper_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
)

// TestReadCommittedHidesAborted: the mapper's exactly-once rests on
// read_committed consumers (the emitter) never seeing an aborted
// transaction's records, also when several transactional producers (mapper
// sessions or instances) interleave on one partition. Apache Kafka keeps
// that. kfake (franz-go's, 2026-09-18) does not: it shows most aborted
// records of interleaved producers, so on kfake the emitter sends a few
// hundred events twice after the mapper's start-up rebalance (Heap's
// idempotency key drops them). On kfake the test checks that this is still
// the anomaly seen, so it fails, saying so, once kfake is fixed.
func TestReadCommittedHidesAborted(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Topics(t, brokers, 1).Events
	ctx := context.Background()
	var producers []*kgo.Client
	for i := range 2 {
		p, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
			kgo.TransactionalID(fmt.Sprintf("%s-tx%d", topic, i)))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		producers = append(producers, p)
	}
	committed, aborted := 0, 0
	for round := range 60 {
		for i, p := range producers {
			commit := (round+i)%5 != 0
			if err := p.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for j := range 20 {
				p.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d/%d/%d/%v", round, i, j, commit)}, nil)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				t.Fatal(err)
			}
			if commit {
				committed += 20
			} else {
				aborted += 20
			}
		}
	}
	// Small fetches, as a consumer of a backlog sees it: a fetch ends
	// inside the interleaved transactions.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxBytes(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	for empty, deadline := 0, time.Now().Add(30*time.Second); empty < 3 && time.Now().Before(deadline); {
		pollCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := cl.PollRecords(pollCtx, 50)
		cancel()
		if fs.NumRecords() == 0 {
			empty++
			continue
		}
		empty = 0
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	var gotCommitted, gotAborted, twice int
	for v, n := range seen {
		if strings.HasSuffix(v, "/true") {
			gotCommitted++
		} else {
			gotAborted++
		}
		if n > 1 {
			twice++
		}
	}
	if gotCommitted != committed || twice > 0 {
		t.Fatalf("read %d of %d committed records, %d more than once", gotCommitted, committed, twice)
	}
	switch {
	case kafkatest.Real() && gotAborted > 0:
		t.Fatalf("a read_committed consumer saw %d of %d aborted records", gotAborted, aborted)
	case !kafkatest.Real() && gotAborted == 0:
		t.Fatal("kfake no longer shows aborted records of interleaved producers: drop this branch and the note in BENCHMARKS.md")
	case !kafkatest.Real():
		t.Logf("kfake showed %d of %d aborted records (the known kfake anomaly)", gotAborted, aborted)
	}
}
