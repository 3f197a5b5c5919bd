package kafka

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadTable reads a compacted topic to its last stable offset and returns
// the latest committed value of each key (a table, as Kafka Streams calls it).
func ReadTable(ctx context.Context, opts []kgo.Opt, topic string) (map[string][]byte, error) {
	recs, err := ReadTableRecords(ctx, opts, topic)
	if err != nil {
		return nil, err
	}
	table := make(map[string][]byte, len(recs))
	for k, r := range recs {
		table[k] = r.Value
	}
	return table, nil
}

// ReadTableRecords is ReadTable keeping each key's latest record whole
// (headers, timestamp).
func ReadTableRecords(ctx context.Context, opts []kgo.Opt, topic string) (map[string]*kgo.Record, error) {
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers count toward the end offset: see them to know
		// when the end is reached.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: read %s: %w", topic, err)
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: read %s: end offsets: %w", topic, err)
	}
	ends, read := map[int32]int64{}, map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	done := func() bool {
		for part, end := range ends {
			if read[part] < end {
				return false
			}
		}
		return true
	}
	table := map[string]*kgo.Record{}
	// Long enough for a large table; short enough that a broker that stops
	// answering fails the read instead of hanging it.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for !done() {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return nil, fmt.Errorf("kafka: read %s: %w", topic, rctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			read[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			if r.Value == nil {
				delete(table, string(r.Key))
			} else {
				table[string(r.Key)] = r
			}
		})
	}
	return table, nil
}
