package kafka

import (
	"context"

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
// (kgo.RequiredAcks(kgo.AllISRAcks())).
type Producer struct {
	Client *kgo.Client
}

// Publish produces recs and waits for every acknowledgement.
func (p Producer) Publish(ctx context.Context, recs ...*kgo.Record) error {
	return p.Client.ProduceSync(ctx, recs...).FirstErr()
}
