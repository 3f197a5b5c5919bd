// Package kafka holds the pipeline's topic contract (docs/ARCHITECTURE.md
// §3) and the client settings every service shares.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers.
const (
	HeaderSource     = "source"
	HeaderKind       = "kind"
	HeaderReceivedAt = "received-at"
	HeaderRequestID  = "request-id"
	HeaderReason     = "reason"
	HeaderEventID    = "event-id"
	HeaderEventName  = "event-name"
	HeaderOrigin     = "origin" // topic/partition/offset a dead letter came from
	// Set by ctl replay and ctl redrive (pkg/replay).
	HeaderReplayOf     = "replay-of"     // topic/partition/offset a replayed record copies
	HeaderReplaySalt   = "replay-salt"   // -new-keys: mixed into event ids, so Heap keeps a second copy
	HeaderRedrivenFrom = "redriven-from" // topic/partition/offset of the dead letter sent back
)

// Topics names the pipeline's topics; a prefix lets tests and tenants share a cluster.
type Topics struct {
	Raw       string // mailchimp.raw
	Events    string // heap.events
	Pending   string // heap.events.pending (compacted): events waiting for an identity; a release is a tombstone
	RawDLQ    string // mailchimp.dlq
	EventsDLQ string // heap.events.dlq
	Cursors   string // mailchimp.cursors (compacted): the poller's progress per campaign
	Tokens    string // mailchimp.tokens (compacted): encrypted OAuth tokens per source
	Campaigns string // mailchimp.campaigns (compacted): campaign metadata, the truth behind the Redis cache
	// Identities is heap.identities (compacted): email key -> Heap identity per app, the truth behind the Redis cache.
	Identities string
}

// NewTopics returns the topic names under prefix: deploy/topics.yaml's,
// where the names are written (layout.go).
func NewTopics(prefix string) Topics {
	t := layoutTopics
	for _, field := range roles {
		*field(&t) = prefix + *field(&t)
	}
	return t
}

// All lists every topic.
func (t Topics) All() []string {
	return []string{t.Raw, t.Events, t.Pending, t.RawDLQ, t.EventsDLQ, t.Cursors, t.Tokens, t.Campaigns, t.Identities}
}

// Compacted reports whether topic keeps only the latest record per key.
func (t Topics) Compacted(topic string) bool {
	return topic == t.Cursors || topic == t.Tokens || topic == t.Campaigns || topic == t.Identities || topic == t.Pending
}

// Ensure creates the pipeline's missing topics, compacted where the contract says so.
func (t Topics) Ensure(ctx context.Context, cl *kgo.Client, partitions int32, replication int16) error {
	var plain, compacted []string
	for _, topic := range t.All() {
		if t.Compacted(topic) {
			compacted = append(compacted, topic)
		} else {
			plain = append(plain, topic)
		}
	}
	if err := EnsureTopics(ctx, cl, partitions, replication, nil, plain...); err != nil {
		return err
	}
	compact := "compact"
	return EnsureTopics(ctx, cl, partitions, replication, map[string]*string{"cleanup.policy": &compact}, compacted...)
}

// EnsureTopics creates missing topics; existing ones are left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, replication int16, configs map[string]*string, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, replication, configs, topics...)
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	var errs []error
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("topic %s: %w", r.Topic, r.Err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kafka: create topics: %w", errors.Join(errs...))
	}
	return waitForTopics(ctx, adm, topics)
}

// waitForTopics waits until metadata shows every topic with a leader, so the
// first produce after creation does not race the broker.
func waitForTopics(ctx context.Context, adm *kadm.Client, topics []string) error {
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil {
			ready := true
			for _, t := range topics {
				td, ok := md.Topics[t]
				if !ok || td.Err != nil || len(td.Partitions) == 0 {
					ready = false
					break
				}
				for _, p := range td.Partitions {
					if p.Leader < 0 || p.Err != nil {
						ready = false
					}
				}
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: waiting for topics: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DeadLetter copies r to topic with the reason it could not be processed
// and where it came from, keeping its key, value and headers.
func DeadLetter(r *kgo.Record, topic, reason string) *kgo.Record {
	hdrs := append(slices.Clone(r.Headers),
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderOrigin, Value: []byte(fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset))},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hdrs}
}

// Header returns the value of the first header named key.
func Header(r *kgo.Record, key string) string {
	return string(HeaderBytes(r, key))
}

// HeaderBytes is Header without the copy: the record's own bytes, or nil.
func HeaderBytes(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// GroupOpts are every consumer group member's: cooperative-sticky, and
// timeouts short enough that a member killed or leaving does not hold the
// group (and a peer's shutdown, which waits for a join in flight) for the
// defaults' 45 s session and 60 s rebalance. instanceID, when set, makes the
// member static: restarted under the same id it gets its partitions back
// without a rebalance.
func GroupOpts(group, instanceID string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(15 * time.Second),
		kgo.RebalanceTimeout(20 * time.Second),
	}
	if instanceID != "" {
		opts = append(opts, kgo.InstanceID(instanceID))
	}
	return opts
}
