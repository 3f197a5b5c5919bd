package identityfeed

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// OpenPublisher connects an idempotent, acks=all producer with opts (a
// kafka.Conn's) for a one-off command (ctl identities import). The topics
// must exist: `ctl topics apply` creates them. Close the client when done.
func OpenPublisher(opts []kgo.Opt) (kafka.Producer, error) {
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return kafka.Producer{}, fmt.Errorf("identityfeed: kafka: %w", err)
	}
	return kafka.Producer{Client: cl}, nil
}
