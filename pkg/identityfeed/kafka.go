package identityfeed

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
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

// OpenPublisher connects an idempotent, acks=all producer with opts (a
// kafka.Conn's) for a one-off command (ctl identities import). The topics
// must exist: `ctl topics apply` creates them. Close the client when done.
func OpenPublisher(opts []kgo.Opt) (KafkaPublisher, error) {
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return KafkaPublisher{}, fmt.Errorf("identityfeed: kafka: %w", err)
	}
	return KafkaPublisher{Client: cl}, nil
}
