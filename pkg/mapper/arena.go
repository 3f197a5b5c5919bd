package mapper

import (
	"github.com/twmb/franz-go/pkg/kgo"
)

// arena returns chunk part's arena with room for records: the last
// transaction's, reset, when all its records were flushed, else a new one.
func (m *loop) arena(part, records int) *arena {
	if !m.flushed {
		m.arenas[part] = &arena{}
	}
	m.arenas[part].reset(records)
	return m.arenas[part]
}

// arena hands out a chunk's records, headers and bytes from a few large
// blocks instead of five allocations a record (a route.Alloc); what it
// hands out is never written again while any record in it may be read. A
// session reuses its arenas once a transaction's records were all flushed
// (reset), so the records of a transaction cost no garbage.
type arena struct {
	recs   []kgo.Record
	hdrs   []kgo.RecordHeader
	buf    []byte
	blocks [][]byte // buf is blocks[block]
	block  int
}

// reset makes the arena's room for records free again. Caller: nothing
// handed out before is read again (the producer flushed it).
func (a *arena) reset(records int) {
	if cap(a.recs) < records {
		a.recs = make([]kgo.Record, 0, records)
	}
	if cap(a.hdrs) < 4*records {
		a.hdrs = make([]kgo.RecordHeader, 0, 4*records)
	}
	a.recs, a.hdrs, a.block = a.recs[:0], a.hdrs[:0], 0
	a.buf = nil
	if len(a.blocks) > 0 {
		a.buf = a.blocks[0][:0]
	}
}

// Free returns room to append a record's bytes to; Keep takes them.
func (a *arena) Free() []byte {
	if cap(a.buf)-len(a.buf) < 1024 {
		if a.buf != nil {
			a.block++
		}
		if a.block == len(a.blocks) {
			a.blocks = append(a.blocks, make([]byte, 0, 64<<10))
		}
		a.buf = a.blocks[a.block][:0]
	}
	return a.buf[len(a.buf):len(a.buf)]
}

// Keep marks b, appended to Free(), as taken: b stayed in the block unless
// it outgrew the room, and then append gave it an array of its own.
func (a *arena) Keep(b []byte) []byte {
	if len(b) <= cap(a.buf)-len(a.buf) {
		a.buf = a.buf[:len(a.buf)+len(b)]
	}
	return b[:len(b):len(b)]
}

// Record returns a record to fill.
func (a *arena) Record() *kgo.Record {
	if len(a.recs) == cap(a.recs) {
		return new(kgo.Record)
	}
	a.recs = a.recs[:len(a.recs)+1]
	return &a.recs[len(a.recs)-1]
}

// Headers returns n empty headers with room for one more (a reason).
func (a *arena) Headers(n int) []kgo.RecordHeader {
	if cap(a.hdrs)-len(a.hdrs) < n+1 {
		return make([]kgo.RecordHeader, n, n+1)
	}
	at := len(a.hdrs)
	a.hdrs = a.hdrs[:at+n+1]
	return a.hdrs[at : at+n : at+n+1]
}
