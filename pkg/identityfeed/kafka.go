package identityfeed

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// KafkaPublisher publishes through a franz-go client and waits for every
// acknowledgement. The client must keep franz-go's defaults of an idempotent
// producer and acks=all.
type KafkaPublisher struct {
	Client *kgo.Client
}

// Publish produces recs and waits for every acknowledgement.
func (p KafkaPublisher) Publish(ctx context.Context, recs ...*kgo.Record) error {
	if err := p.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("identityfeed: produce: %w", err)
	}
	return nil
}

// OpenPublisher connects an idempotent, acks=all producer for a one-off
// command (ctl identities import) and creates the pipeline's topics when
// missing. Close the client when done.
func OpenPublisher(ctx context.Context, brokers []string, log *zap.Logger, topics kafka.Topics, partitions int32, replication int16) (KafkaPublisher, error) {
	if len(brokers) == 0 {
		return KafkaPublisher{}, fmt.Errorf("identityfeed: KAFKA_BROKERS is required")
	}
	cl, err := kgo.NewClient(append(kafka.ClientOpts(brokers, log), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return KafkaPublisher{}, fmt.Errorf("identityfeed: kafka: %w", err)
	}
	if err := topics.Ensure(ctx, cl, partitions, replication); err != nil {
		cl.Close()
		return KafkaPublisher{}, err
	}
	return KafkaPublisher{Client: cl}, nil
}
