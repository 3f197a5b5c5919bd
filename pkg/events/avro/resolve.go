package avro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Resolver reads data written with one schema (the writer's) as another
// (the reader's), by the spec's "Schema Resolution": it rewrites the
// writer's binary datum into the binary datum the reader's schema
// describes, so a decoder of the reader's schema reads it as its own.
//
//   - records: fields are matched by name (or a reader field's aliases);
//     a writer field the reader lacks is read and dropped; a reader field
//     the writer lacks gets the reader's default; fields come out in the
//     reader's order;
//   - unions: a writer's branch goes to the first reader branch of the same
//     type (and name), else the first it promotes to; a non-union on one
//     side matches the other's branch the same way;
//   - promotions: int to long, float or double; long to float or double;
//     float to double; string and bytes either way;
//   - enums: by symbol, an unknown one read as the reader's enum default;
//   - named types match by unqualified name or a reader's alias; fixed
//     sizes must be equal; logical types resolve as their underlying type.
//
// A Resolver is built only when the reader can read every datum of the
// writer's schema (Apache Avro's SchemaCompatibility), so a record never
// fails to resolve for its schema's sake, only for its bytes'.
type Resolver struct {
	Writer, Reader *Schema
	prog           *op
}

// Incompatible lists why a reader cannot read a writer's data.
type Incompatible struct{ Problems []string }

func (e *Incompatible) Error() string {
	return "avro: reader cannot read the writer's data: " + strings.Join(e.Problems, "; ")
}

// NewResolver compiles the resolution of writer's data to reader's
// schema, or returns an *Incompatible.
func NewResolver(writer, reader *Schema) (*Resolver, error) {
	c := &compiler{plans: map[[2]*Schema]*op{}}
	prog := c.resolve(writer, reader, nameOf(reader))
	if len(c.problems) > 0 {
		return nil, &Incompatible{Problems: c.problems}
	}
	return &Resolver{Writer: writer, Reader: reader, prog: prog}, nil
}

// CanRead reports whether a reader with schema reader can read every
// datum written with writer: nil, or an *Incompatible saying why not.
func CanRead(reader, writer *Schema) error {
	_, err := NewResolver(writer, reader)
	return err
}

// ErrTruncated is a datum that ends early or holds impossible values.
var ErrTruncated = errors.New("avro: truncated or malformed datum")

// Append reads one datum written with r.Writer from src, appends it to dst
// as r.Reader writes it, and returns the result and what follows the datum
// in src.
func (r *Resolver) Append(dst, src []byte) (out, rest []byte, err error) {
	in := &input{b: src}
	out = run(r.prog, in, dst, true)
	if in.err != nil {
		return dst, nil, in.err
	}
	return out, in.b, nil
}

type opKind uint8

const (
	opNull           opKind = iota
	opBool                  // one byte, 0 or 1
	opVarint                // int or long, and int to long
	opVarintToFloat         // int or long to float
	opVarintToDouble        // int or long to double
	opFloatToDouble
	opFixedWidth // float, double, fixed: n bytes
	opLenBytes   // string, bytes
	opEnum
	opArray
	opMap
	opRecord
	opWriterUnion // the writer's union: its branch's op
	opToUnion     // a reader's union branch: its index, then elem
)

type op struct {
	kind opKind
	n    int   // opFixedWidth: bytes; opToUnion: the reader's branch
	elem *op   // array items, map values, opToUnion's value
	alts []*op // opWriterUnion: per writer branch

	enum    []int32 // writer symbol -> reader symbol, -1: none
	enumDef int32   // the reader's enum default, -1: none

	fields   []fieldOp // opRecord: the writer's fields, in its order
	inOrder  bool      // writer fields come in the reader's order
	after    []byte    // inOrder: defaults of the reader's trailing fields
	written  []bool    // !inOrder: per reader field, whether the writer has it
	defaults [][]byte  // !inOrder: per reader field the writer lacks, its default
}

type fieldOp struct {
	op     *op
	reader int    // the reader field's index, -1: read and dropped
	before []byte // inOrder: defaults of the reader fields before this one
}

type compiler struct {
	plans    map[[2]*Schema]*op
	problems []string
}

func (c *compiler) problem(path, format string, args ...any) *op {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
	return &op{kind: opNull}
}

func nameOf(s *Schema) string {
	if s.Name != "" {
		return s.Name[strings.LastIndexByte(s.Name, '.')+1:]
	}
	return s.Type
}

func unqualified(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }

// namesMatch: the spec's "same (unqualified) name", or a reader's alias.
func namesMatch(w, r *Schema) bool {
	return unqualified(w.Name) == unqualified(r.Name) || slices.Contains(r.Aliases, w.Name)
}

// matches is the spec's "match" of two non-union schemas, without
// promotion (exact) or with it.
func matches(w, r *Schema, promote bool) bool {
	if w.Type == r.Type {
		switch w.Type {
		case Record, Enum, Fixed:
			return namesMatch(w, r)
		}
		return true
	}
	if !promote {
		return false
	}
	switch w.Type {
	case Int:
		return r.Type == Long || r.Type == Float || r.Type == Double
	case Long:
		return r.Type == Float || r.Type == Double
	case Float:
		return r.Type == Double
	case String:
		return r.Type == Bytes
	case Bytes:
		return r.Type == String
	}
	return false
}

func (c *compiler) resolve(w, r *Schema, path string) *op {
	key := [2]*Schema{w, r}
	if p, ok := c.plans[key]; ok {
		return p // a recursive type: filled in by the call that made it
	}
	p := &op{}
	c.plans[key] = p
	switch {
	case w.Type == Union:
		p.kind = opWriterUnion
		for i, b := range w.Types {
			p.alts = append(p.alts, c.resolve(b, r, fmt.Sprintf("%s[%d]", path, i)))
		}
	case r.Type == Union:
		i := slices.IndexFunc(r.Types, func(b *Schema) bool { return matches(w, b, false) })
		if i < 0 {
			i = slices.IndexFunc(r.Types, func(b *Schema) bool { return matches(w, b, true) })
		}
		if i < 0 {
			*p = *c.problem(path, "the reader's union has no branch for the writer's %s", describe(w))
			break
		}
		*p = op{kind: opToUnion, n: i, elem: c.resolve(w, r.Types[i], path)}
	case !matches(w, r, true):
		*p = *c.problem(path, "the writer's %s cannot be read as %s", describe(w), describe(r))
	default:
		c.same(p, w, r, path)
	}
	return p
}

// same fills p for two schemas that match.
func (c *compiler) same(p *op, w, r *Schema, path string) {
	switch w.Type {
	case Null:
		p.kind = opNull
	case Boolean:
		p.kind = opBool
	case Int, Long:
		switch r.Type {
		case Float:
			p.kind = opVarintToFloat
		case Double:
			p.kind = opVarintToDouble
		default:
			p.kind = opVarint
		}
	case Float:
		p.kind, p.n = opFixedWidth, 4
		if r.Type == Double {
			p.kind = opFloatToDouble
		}
	case Double:
		p.kind, p.n = opFixedWidth, 8
	case String, Bytes:
		p.kind = opLenBytes
	case Fixed:
		if w.Size != r.Size {
			*p = *c.problem(path, "fixed %s has %d bytes, the reader's %d", w.Name, w.Size, r.Size)
			return
		}
		p.kind, p.n = opFixedWidth, w.Size
	case Enum:
		p.kind, p.enumDef = opEnum, -1
		if r.Default != nil {
			p.enumDef = int32(slices.Index(r.Symbols, *r.Default))
		}
		for _, sym := range w.Symbols {
			i := int32(slices.Index(r.Symbols, sym))
			if i < 0 && p.enumDef < 0 {
				c.problem(path, "enum %s: the reader lacks symbol %s and has no default", w.Name, sym)
			}
			p.enum = append(p.enum, i)
		}
	case Array:
		p.kind, p.elem = opArray, c.resolve(w.Items, r.Items, path+"[]")
	case Map:
		p.kind, p.elem = opMap, c.resolve(w.Values, r.Values, path+"{}")
	case Record:
		c.record(p, w, r, path)
	}
}

func (c *compiler) record(p *op, w, r *Schema, path string) {
	p.kind = opRecord
	written := make([]int, len(r.Fields)) // reader field -> writer field, -1: none
	for j, rf := range r.Fields {
		written[j] = slices.IndexFunc(w.Fields, func(wf *Field) bool {
			return wf.Name == rf.Name || slices.Contains(rf.Aliases, wf.Name)
		})
	}
	defaults := make([][]byte, len(r.Fields))
	for j, rf := range r.Fields {
		if written[j] >= 0 {
			continue
		}
		if !rf.HasDefault {
			c.problem(path+"."+rf.Name, "the writer lacks the field and the reader has no default")
			continue
		}
		d, err := EncodeDefault(rf.Type, rf.Default)
		if err != nil {
			c.problem(path+"."+rf.Name, "invalid default: %v", err)
			continue
		}
		defaults[j] = d
	}
	p.inOrder = true
	last := -1
	for i, wf := range w.Fields {
		j := slices.Index(written, i)
		fo := fieldOp{reader: j}
		if j < 0 {
			fo.op = c.resolve(wf.Type, wf.Type, path+"."+wf.Name) // read to drop
		} else {
			fo.op = c.resolve(wf.Type, r.Fields[j].Type, path+"."+wf.Name)
			if j < last {
				p.inOrder = false
			}
			last = max(last, j)
		}
		p.fields = append(p.fields, fo)
	}
	if !p.inOrder {
		p.defaults = defaults
		for j := range r.Fields {
			p.written = append(p.written, written[j] >= 0)
		}
		return
	}
	next := 0 // the first reader field not yet written
	for i := range p.fields {
		if j := p.fields[i].reader; j >= 0 {
			for ; next < j; next++ {
				p.fields[i].before = append(p.fields[i].before, defaults[next]...)
			}
			next = j + 1
		}
	}
	for ; next < len(r.Fields); next++ {
		p.after = append(p.after, defaults[next]...)
	}
}

// input is a datum being read; err sticks once set.
type input struct {
	b   []byte
	err error
}

func (in *input) fail() { in.err = ErrTruncated; in.b = nil }

func (in *input) varint() int64 {
	if in.err != nil {
		return 0
	}
	v, n := binary.Varint(in.b)
	if n <= 0 {
		in.fail()
		return 0
	}
	in.b = in.b[n:]
	return v
}

// take returns the next n bytes.
func (in *input) take(n int64) []byte {
	if in.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(in.b)) {
		in.fail()
		return nil
	}
	b := in.b[:n]
	in.b = in.b[n:]
	return b
}

// maxItems bounds one block's count where items may take no bytes (an
// array of nulls): a hostile count must not spin.
const maxItems = 1 << 20

// blockCount reads an array or map block's count; 0 ends the blocks.
func (in *input) blockCount() int64 {
	n := in.varint()
	if n < 0 {
		n = -n
		in.varint() // the block's size in bytes
	}
	if in.err == nil && (n < 0 || n > int64(len(in.b)) && n > maxItems) {
		in.fail()
		return 0
	}
	return n
}

// run reads p's datum from in and, when emit is set, appends the reader's
// encoding of it to out.
func run(p *op, in *input, out []byte, emit bool) []byte {
	if in.err != nil {
		return out
	}
	switch p.kind {
	case opNull:
	case opBool:
		b := in.take(1)
		if in.err == nil && b[0] > 1 {
			in.fail()
		}
		if emit && in.err == nil {
			out = append(out, b[0])
		}
	case opVarint:
		v := in.varint()
		if emit {
			out = binary.AppendVarint(out, v)
		}
	case opVarintToFloat:
		v := in.varint()
		if emit {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(v)))
		}
	case opVarintToDouble:
		v := in.varint()
		if emit {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(float64(v)))
		}
	case opFloatToDouble:
		b := in.take(4)
		if emit && in.err == nil {
			f := math.Float32frombits(binary.LittleEndian.Uint32(b))
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(float64(f)))
		}
	case opFixedWidth:
		b := in.take(int64(p.n))
		if emit {
			out = append(out, b...)
		}
	case opLenBytes:
		b := in.take(in.varint())
		if emit && in.err == nil {
			out = append(binary.AppendVarint(out, int64(len(b))), b...)
		}
	case opEnum:
		i := in.varint()
		if in.err != nil || i < 0 || i >= int64(len(p.enum)) {
			in.fail()
			return out
		}
		j := p.enum[i]
		if j < 0 {
			j = p.enumDef
		}
		if emit {
			out = binary.AppendVarint(out, int64(j))
		}
	case opArray, opMap:
		for in.err == nil {
			n := in.blockCount()
			if n == 0 {
				break
			}
			if emit {
				out = binary.AppendVarint(out, n)
			}
			for range n {
				if p.kind == opMap {
					k := in.take(in.varint())
					if emit && in.err == nil {
						out = append(binary.AppendVarint(out, int64(len(k))), k...)
					}
				}
				out = run(p.elem, in, out, emit)
				if in.err != nil {
					break
				}
			}
		}
		if emit {
			out = append(out, 0)
		}
	case opRecord:
		if p.inOrder || !emit {
			for _, f := range p.fields {
				if emit {
					out = append(out, f.before...)
				}
				out = run(f.op, in, out, emit && f.reader >= 0)
			}
			if emit {
				out = append(out, p.after...)
			}
			return out
		}
		// The writer's fields in another order: each into a scratch
		// buffer, then all in the reader's.
		var scratch []byte
		spans := make([][2]int, len(p.written))
		for _, f := range p.fields {
			start := len(scratch)
			scratch = run(f.op, in, scratch, f.reader >= 0)
			if f.reader >= 0 {
				spans[f.reader] = [2]int{start, len(scratch)}
			}
		}
		for j, w := range p.written {
			if w {
				out = append(out, scratch[spans[j][0]:spans[j][1]]...)
			} else {
				out = append(out, p.defaults[j]...)
			}
		}
	case opWriterUnion:
		i := in.varint()
		if in.err != nil || i < 0 || i >= int64(len(p.alts)) {
			in.fail()
			return out
		}
		out = run(p.alts[i], in, out, emit)
	case opToUnion:
		if emit {
			out = binary.AppendVarint(out, int64(p.n))
		}
		out = run(p.elem, in, out, emit)
	}
	return out
}
