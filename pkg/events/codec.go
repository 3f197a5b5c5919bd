package events

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/linkedin/goavro/v2"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// Codec encodes events as Avro and decodes every version of them. It is
// safe for concurrent use; build it once per process.
//
// Framing, chosen by a value's first byte, so one topic may hold both (a
// topic moving to or from a registry does):
//   - Avro single-object encoding (the default): C3 01, the 8-byte
//     little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
//     Canonical Form, then the binary datum. The fingerprint is package
//     avro's, as the spec and Apache Avro's Java compute it, not goavro's
//     Codec.Rabin, whose canonical form keeps logical types (goavro #174;
//     see avro.Canonical), so that any Avro library reads the header;
//   - the Confluent wire format, with a schema registry (NewRegistryCodec):
//     00, the writer schema's 4-byte big-endian registry id, the datum.
//
// Versions: it writes the current schema, schemas.HeapEmailEvent, and reads
// a datum of any schema it can resolve to it: a version in
// schemas.HeapEmailEventVersions (by fingerprint) or a registry's schema (by
// id). A datum of the current schema is read by the hand-written decoder
// (binary.go); any other is first rewritten into the current schema's
// binary form by Avro schema resolution (avro.Resolver: a field the writer
// lacks gets the current schema's default, one the current schema lacks is
// dropped, the rest are matched by name), then read the same way. A
// writer's schema the current one cannot read every datum of is refused
// when first met, with the reason.
//
// With WriteVersion it writes another version it reads instead (see
// there); Decode is unchanged.
type Codec struct {
	avro     *goavro.Codec // the current schema's: the reference binary.go is checked against
	current  *version
	versions map[uint64]*version // by fingerprint, the current one included
	header   []byte              // what every encoding starts with
	reg      *registryCache      // nil: no schema registry
	// written is the version Encode writes: current, or WriteVersion's;
	// writeText its schema text (what a registry codec registers), and
	// toWritten the resolution of the current schema's datum to it (nil
	// when written is current).
	written   *version
	writeText string
	toWritten *avro.Resolver
}

// version is a writer's schema the codec reads.
type version struct {
	n       int    // its place in schemas.HeapEmailEventVersions, from 1; 0: only a registry's
	id      uint32 // its registry id, when it came from the registry
	fp      uint64
	schema  *avro.Schema
	resolve *avro.Resolver // to the current schema; nil: it is the current one
}

func (v *version) String() string {
	if v.n == 0 {
		return fmt.Sprintf("schema id %d (fingerprint %016x)", v.id, v.fp)
	}
	return fmt.Sprintf("version %d (fingerprint %016x)", v.n, v.fp)
}

// Errors of Decode, for errors.Is. Any other decode error is the record's
// own: truncated or malformed bytes.
var (
	// ErrUnknownSchema: the record's writer schema is not one the codec
	// knows or can learn (an unknown fingerprint, an id the registry does
	// not have, a registry id while none is configured), or cannot be
	// resolved to the current schema. Permanent for that record.
	ErrUnknownSchema = errors.New("unknown schema")
	// ErrSchemaUnavailable: the registry could not be asked for the
	// record's schema. Not the record's fault: retry.
	ErrSchemaUnavailable = errors.New("schema registry unavailable")
)

// Option changes how NewCodec or NewRegistryCodec builds a codec.
type Option func(*options)

type options struct {
	versions []string
	write    string
}

// Versions replaces the schema versions a codec reads (default
// schemas.HeapEmailEventVersions); the current schema is always read.
// Tests use it to read a candidate next version.
func Versions(texts ...string) Option { return func(o *options) { o.versions = texts } }

// WriteVersion makes Encode and AppendEncode write version text, one of
// the versions the codec reads (Versions), instead of the current schema.
// It exists for rolling upgrades: a release can write a newer version
// before the hand-written encoder (binary.go) is regenerated for it, once
// the release before it reads that version, and a test can run builds of
// two versions side by side. The newer version must hold every datum of
// the current one (a field it adds has a default); NewCodec refuses it
// otherwise.
//
// Its cost: each event is encoded with the current schema as usual, then
// rewritten into the written version's binary form by Avro schema
// resolution (avro.Resolver; a field the current schema lacks gets its
// default), a second pass over every datum. The single-object header
// carries the written version's fingerprint; a registry codec registers
// the written version under its subjects and writes its id.
func WriteVersion(text string) Option { return func(o *options) { o.write = text } }

// NewCodec builds a codec writing single-object encoding. It compiles the
// current schema with goavro, checks the hand-written binary encoding
// (binary.go) against goavro's, and compiles the resolution of every other
// version to the current one: a version the current schema cannot read
// fails here, not on a record.
func NewCodec(opts ...Option) (*Codec, error) {
	o := options{versions: schemas.HeapEmailEventVersions}
	for _, opt := range opts {
		opt(&o)
	}
	c, err := goavro.NewCodec(schemas.HeapEmailEvent)
	if err != nil {
		return nil, fmt.Errorf("events: compile schema: %w", err)
	}
	cur, err := parseVersion(schemas.HeapEmailEvent)
	if err != nil {
		return nil, err
	}
	codec := &Codec{avro: c, current: &version{fp: avro.Fingerprint(cur), schema: cur}, versions: map[uint64]*version{}}
	codec.versions[codec.current.fp] = codec.current
	codec.header = binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, codec.current.fp)
	for i, text := range o.versions {
		s, err := parseVersion(text)
		if err != nil {
			return nil, fmt.Errorf("events: version %d: %w", i+1, err)
		}
		fp := avro.Fingerprint(s)
		if fp == codec.current.fp {
			codec.current.n = i + 1
			continue
		}
		r, err := avro.NewResolver(s, cur)
		if err != nil {
			return nil, fmt.Errorf("events: version %d (fingerprint %016x) cannot be read as the current schema: %w", i+1, fp, err)
		}
		codec.versions[fp] = &version{n: i + 1, fp: fp, schema: s, resolve: r}
	}
	if codec.current.n == 0 {
		codec.current.n = len(o.versions) + 1
	}
	codec.written, codec.writeText = codec.current, schemas.HeapEmailEvent
	if o.write != "" {
		if err := codec.writeVersion(o.write, cur); err != nil {
			return nil, err
		}
	}
	probe := Event{ID: "id", SourceID: "s", AppID: "a", Identity: "i", EmailKey: "k", Name: "n",
		Time: time.UnixMilli(1759413912345), CampaignID: "c", CampaignTitle: "t", ListID: "l", IP: "ip", URL: "u",
		BounceType: "b", Subject: "su", Tags: []string{"x", "y"},
		Lineage: Lineage{Topic: "raw", Partition: 3, Offset: 42, Kind: "k", RequestID: "r", ReceivedAt: time.UnixMilli(1759413999999)}}
	want, err := c.BinaryFromNative(nil, Native(probe))
	if err != nil {
		return nil, fmt.Errorf("events: schema check: %w", err)
	}
	if got := appendBinary(nil, probe); !bytes.Equal(got, want) {
		return nil, fmt.Errorf("events: the hand-written Avro encoding no longer matches the schema: update binary.go")
	}
	if codec.toWritten != nil {
		// What the codec writes it reads back as written.
		enc := codec.AppendEncode(nil, probe)
		if got, err := codec.Decode(enc); err != nil || !bytes.Equal(appendBinary(nil, got), want) {
			return nil, fmt.Errorf("events: %s written by WriteVersion does not read back as written: %v", codec.written, err)
		}
	}
	return codec, nil
}

// writeVersion makes the codec write text, a version it reads, whose
// schema reads every datum of the current schema cur.
func (c *Codec) writeVersion(text string, cur *avro.Schema) error {
	s, err := parseVersion(text)
	if err != nil {
		return fmt.Errorf("events: the version to write: %w", err)
	}
	fp := avro.Fingerprint(s)
	v, ok := c.versions[fp]
	if !ok {
		return fmt.Errorf("events: the version to write (fingerprint %016x) is not among the versions the codec reads", fp)
	}
	if v == c.current {
		return nil
	}
	r, err := avro.NewResolver(cur, s)
	if err != nil {
		return fmt.Errorf("events: %s cannot hold every datum of the current schema, so it cannot be written: %w", v, err)
	}
	c.written, c.writeText, c.toWritten = v, text, r
	c.header = binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, v.fp)
	return nil
}

// parseVersion parses a version this build lists. goavro, the reference
// parser, must accept it too: package avro parses it again only for what
// goavro's Codec does not expose (fields, defaults, aliases).
func parseVersion(text string) (*avro.Schema, error) {
	if _, err := goavro.NewCodec(text); err != nil {
		return nil, fmt.Errorf("events: goavro refuses the schema: %w", err)
	}
	s, err := avro.Parse(text)
	if err != nil {
		return nil, err
	}
	if err := avro.ValidateDefaults(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Fingerprint is the current schema's CRC-64-AVRO fingerprint, as its
// single-object encoding carries it (unless WriteVersion chose another).
func (c *Codec) Fingerprint() uint64 { return c.current.fp }

// Framing describes what Encode writes, for a start-up log line.
func (c *Codec) Framing() string {
	if c.reg != nil {
		return fmt.Sprintf("confluent wire format, schema id %d (version %d, fingerprint %016x)", c.reg.writeID, c.written.n, c.written.fp)
	}
	return fmt.Sprintf("single-object encoding, version %d (fingerprint %016x)", c.written.n, c.written.fp)
}

// Encode returns the encoding of e, or ErrTimeRange for a time the
// encoding cannot hold.
func (c *Codec) Encode(e Event) ([]byte, error) {
	if err := checkTimes(e); err != nil {
		return nil, err
	}
	return c.AppendEncode(make([]byte, 0, len(c.header)+sizeHint(e)), e), nil
}

// AppendEncode appends the encoding of e to dst. e's times must be ones
// timestamp-millis holds, as any with a four-digit year is; Encode checks.
func (c *Codec) AppendEncode(dst []byte, e Event) []byte {
	dst = append(dst, c.header...)
	if c.toWritten == nil {
		return appendBinary(dst, e)
	}
	buf := scratch.Get().(*[]byte)
	defer scratch.Put(buf)
	*buf = appendBinary((*buf)[:0], e)
	out, _, err := c.toWritten.Append(dst, *buf)
	if err != nil {
		// A resolver fails only on bytes its writer's schema does not
		// describe, and these are binary.go's, checked in NewCodec.
		panic(fmt.Sprintf("events: resolving an encoded event to %s: %v", c.written, err))
	}
	return out
}

// scratch holds WriteVersion's current-schema datum before resolution.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// Decode parses an encoded event of any version the codec reads.
func (c *Codec) Decode(b []byte) (Event, error) { return c.decode(b, false) }

// DecodeView is Decode without a copy: the event's strings share b's
// bytes. Use it only while b stays as it is, and keep no string of it
// after: the emitter reads each polled record once, encoding its event for
// Heap, before its fetched batch is reused.
func (c *Codec) DecodeView(b []byte) (Event, error) { return c.decode(b, true) }

// Route is what routing an encoded event needs: the fields its encoding
// starts with.
type Route struct {
	ID, SourceID, AppID, Identity, Name string
	Time                                time.Time
}

// RouteView reads an event's Route and, for the current schema, nothing
// after it, without a copy: its strings share b's bytes, as DecodeView's.
// Decode may still fail on the rest.
func (c *Codec) RouteView(b []byte) (Route, error) {
	body, _, err := c.datum(b)
	if err != nil {
		return Route{}, err
	}
	r := &reader{b: body, whole: view(body)}
	rt, _ := r.route()
	if r.err != nil {
		return Route{}, fmt.Errorf("events: decode: %w", r.err)
	}
	return rt, nil
}

// view is b's bytes as a string, without a copy: read it only while b
// stays as it is.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (c *Codec) decode(b []byte, shared bool) (Event, error) {
	body, fresh, err := c.datum(b)
	if err != nil {
		return Event{}, err
	}
	whole := view(body)
	if !shared && !fresh {
		whole = strings.Clone(whole)
	}
	e, rest, err := readBinary(body, whole)
	if err != nil {
		return Event{}, fmt.Errorf("events: decode: %w", err)
	}
	if len(rest) > 0 {
		return Event{}, fmt.Errorf("events: decode: %d bytes after the event", len(rest))
	}
	return e, nil
}

// datum returns b's datum in the current schema's binary form: b's own
// bytes when it was written with the current schema, else b's datum
// resolved to it, in memory of its own (fresh).
func (c *Codec) datum(b []byte) (body []byte, fresh bool, err error) {
	v, body, err := c.writer(b)
	if err != nil {
		return nil, false, err
	}
	if v.resolve == nil {
		return body, false, nil
	}
	out, rest, err := v.resolve.Append(make([]byte, 0, len(body)+32), body)
	if err != nil {
		return nil, false, fmt.Errorf("events: decode %s: %w", v, err)
	}
	if len(rest) > 0 {
		return nil, false, fmt.Errorf("events: decode %s: %d bytes after the event", v, len(rest))
	}
	return out, true, nil
}

// writer returns the schema b was written with, by its framing, and its
// datum.
func (c *Codec) writer(b []byte) (*version, []byte, error) {
	switch {
	case len(b) >= 10 && b[0] == 0xC3 && b[1] == 0x01:
		fp := binary.LittleEndian.Uint64(b[2:10])
		if fp == c.current.fp {
			return c.current, b[10:], nil
		}
		if v, ok := c.versions[fp]; ok {
			return v, b[10:], nil
		}
		return nil, nil, fmt.Errorf("events: decode: %w: fingerprint %016x is not a version of heap_email_event.avsc this build reads", ErrUnknownSchema, fp)
	case len(b) >= 5 && b[0] == 0x00:
		v, err := c.byID(context.Background(), binary.BigEndian.Uint32(b[1:5]), false)
		return v, b[5:], err
	}
	return nil, nil, errors.New("events: decode: not an Avro event: neither single-object encoding (c3 01) nor the Confluent wire format (00)")
}
