package mapper

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txnPromise is a transaction's produce promise: one function for all its
// records (kgo's FirstErrPromise makes one a record), keeping the first
// error and aborting what is still buffered once there is one.
type txnPromise struct {
	cl      *kgo.Client
	pending sync.WaitGroup
	mu      sync.Mutex
	err     error
	fn      func(*kgo.Record, error)
}

func newTxnPromise(cl *kgo.Client) *txnPromise {
	p := &txnPromise{cl: cl}
	p.fn = func(_ *kgo.Record, err error) {
		defer p.pending.Done()
		if err == nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.err == nil {
			p.err = err
			p.pending.Go(func() { p.cl.AbortBufferedRecords(context.Background()) })
		}
	}
	return p
}

// promise is the promise of one more record.
func (p *txnPromise) promise() func(*kgo.Record, error) {
	p.pending.Add(1)
	return p.fn
}

// Err waits for every record's promise and returns the first error.
func (p *txnPromise) Err() error {
	p.pending.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
