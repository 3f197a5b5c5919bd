package materializer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func (m *Materializer) newProducer() error {
	if m.prod != nil {
		m.prod.Close()
	}
	cl, err := kgo.NewClient(append(slices.Clone(m.cfg.ClientOpts),
		kgo.SeedBrokers(m.cfg.Brokers...),
		kgo.TransactionalID(m.cfg.TransactionID),
		kgo.TransactionTimeout(60*time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("materializer: producer: %w", err)
	}
	m.prod = cl
	return nil
}

// produce writes recs in one transaction; a failed transaction re-creates
// the producer, since its state is then unknown.
func (m *Materializer) produce(ctx context.Context, recs []*kgo.Record) error {
	if err := m.prod.BeginTransaction(); err != nil {
		m.newProducer()
		return fmt.Errorf("materializer: begin: %w", err)
	}
	var mu sync.Mutex
	var first error
	for _, r := range recs {
		m.prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	flushErr := m.prod.Flush(ctx)
	mu.Lock()
	if first == nil {
		first = flushErr
	}
	failed := first
	mu.Unlock()
	commit := kgo.TryCommit
	if failed != nil {
		commit = kgo.TryAbort
		// Waits for records in flight, so no promise runs after this.
		m.prod.AbortBufferedRecords(context.WithoutCancel(ctx))
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := m.prod.EndTransaction(endCtx, commit); err != nil {
		m.newProducer()
		return fmt.Errorf("materializer: end transaction: %w", err)
	}
	if failed != nil {
		return fmt.Errorf("materializer: produce: %w", failed)
	}
	return nil
}
