package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
)

// counted counts what kgo takes from and gives back to the pools.
type counted struct {
	kafka.FetchPools
	bytesPut, recsPut, reused atomic.Int64
}

func (c *counted) GetDecompressBytes(src []byte, codec kgo.CompressionCodecType) []byte {
	b := c.FetchPools.GetDecompressBytes(src, codec)
	if cap(b) > 0 {
		c.reused.Add(1)
	}
	return b
}

func (c *counted) PutDecompressBytes(b []byte) { c.bytesPut.Add(1); c.FetchPools.PutDecompressBytes(b) }
func (c *counted) PutRecords(rs []kgo.Record)  { c.recsPut.Add(1); c.FetchPools.PutRecords(rs) }

// TestFetchPoolsReuse: recycled records give their batches back, later
// fetches decompress into them, and every record still reads as produced.
func TestFetchPoolsReuse(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Prefix(t) + "pools"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := kafka.EnsureTopics(ctx, prod, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	const rounds, per = 20, 200
	value := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("record %06d ", i)), 20) }
	for r := range rounds {
		recs := make([]*kgo.Record, per)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: value(r*per + i)}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	pools := &counted{}
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<10), kgo.WithPools(pools))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for n := 0; n < rounds*per; {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		for _, r := range fs.Records() {
			if !bytes.Equal(r.Value, value(n)) {
				t.Fatalf("record %d reads %.20q", n, r.Value)
			}
			n++
			r.Recycle()
		}
	}
	if pools.bytesPut.Load() == 0 || pools.recsPut.Load() == 0 || pools.reused.Load() == 0 {
		t.Fatalf("batches put back %d, slabs put back %d, fetches into a reused batch %d: want all > 0",
			pools.bytesPut.Load(), pools.recsPut.Load(), pools.reused.Load())
	}
}
