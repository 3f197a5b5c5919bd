package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Publisher writes records durably: it returns once every record is
// acknowledged or one failed, and keeps no record nor any of its bytes
// after it returned (callers reuse them). Ingress publishes webhook units
// through one, the identity feed and its import identity mappings.
type Publisher interface {
	Publish(ctx context.Context, recs ...*kgo.Record) error
}

// Producer is the Publisher of a franz-go client. The client must keep
// franz-go's defaults of an idempotent producer and be built with acks=all
// (kgo.RequiredAcks(kgo.AllISRAcks())): OpenProducer builds one so.
type Producer struct {
	Client *kgo.Client
}

// OpenProducer connects an idempotent, acks=all producer with opts (a
// Conn's role options); the caller closes its Client.
func OpenProducer(opts []kgo.Opt) (Producer, error) {
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return Producer{}, fmt.Errorf("kafka: %w", err)
	}
	return Producer{Client: cl}, nil
}

// Publish produces recs and waits for every acknowledgement.
func (p Producer) Publish(ctx context.Context, recs ...*kgo.Record) error {
	return p.Client.ProduceSync(ctx, recs...).FirstErr()
}
