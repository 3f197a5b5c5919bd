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

// produce maps recs and produces the output in the open transaction, and
// waits for every record: an error means the transaction must abort.
func (m *loop) produce(ctx context.Context, recs []*kgo.Record) (tally, error) {
	var t tally
	out, err := m.transform(ctx, recs)
	if err != nil {
		return t, err
	}
	promise := newTxnPromise(m.sess.Client())
	m.flushed = false // the arenas hold records now in the producer
	for _, r := range out {
		t.add(m.cfg.Topics, r)
		m.sess.Produce(ctx, r, promise.promise())
	}
	// The transaction is whole: send what would wait out the producer's
	// linger (10 ms by default) now. Produce errors come through the
	// promise; a cancelled ctx only stops the hurry.
	m.flushed = m.sess.Client().Flush(ctx) == nil
	return t, promise.Err()
}
