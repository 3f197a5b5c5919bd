// Package eventstest helps the tests of heap.events readers and writers: a
// candidate next version of the event schema, for tests only, and records
// written and read with it as a build of that version would.
package eventstest

import (
	"context"
	_ "embed"
	"encoding/binary"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// V2 is version 1 (schemas/heap_email_event.avsc) and one optional field,
// user_agent (["null","string"], default null), between ip and url: the
// shape of a compatible evolution, placed where it moves every field
// after it. It is not a version the pipeline writes.
//
//go:embed testdata/heap_email_event.v2.avsc
var V2 string

// Codec returns a codec of the current version that also reads V2, as a
// build that lists V2 in schemas.HeapEmailEventVersions would.
func Codec(t testing.TB) *events.Codec {
	t.Helper()
	c, err := events.NewCodec(events.Versions(append(append([]string{}, schemas.HeapEmailEventVersions...), V2)...))
	if err != nil {
		t.Fatalf("events.NewCodec with V2: %v", err)
	}
	return c
}

func schema(t testing.TB, text string) *avro.Schema {
	t.Helper()
	s, err := avro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// V2Fingerprint is V2's CRC-64-AVRO fingerprint.
func V2Fingerprint(t testing.TB) uint64 { return avro.Fingerprint(schema(t, V2)) }

// V2Datum is e's binary datum as goavro writes it with V2, user_agent set
// to ua ("" is null).
func V2Datum(t testing.TB, e events.Event, ua string) []byte {
	t.Helper()
	c, err := goavro.NewCodec(V2)
	if err != nil {
		t.Fatal(err)
	}
	native := events.Native(e)
	native["user_agent"] = nil
	if ua != "" {
		native["user_agent"] = goavro.Union("string", ua)
	}
	b, err := c.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SingleObjectV2 is e as a V2 writer without a registry writes it.
func SingleObjectV2(t testing.TB, e events.Event, ua string) []byte {
	t.Helper()
	h := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, V2Fingerprint(t))
	return append(h, V2Datum(t, e, ua)...)
}

// ConfluentV2 is e as a V2 writer with a registry writes it, V2 being
// registered as id.
func ConfluentV2(t testing.TB, id uint32, e events.Event, ua string) []byte {
	t.Helper()
	return append(binary.BigEndian.AppendUint32([]byte{0x00}, id), V2Datum(t, e, ua)...)
}

// ReadAsV2 reads a single-object encoded value of the current version as a
// V2 reader would: resolved to V2, then decoded by goavro with V2. It
// returns goavro's native form.
func ReadAsV2(t testing.TB, value []byte) map[string]any {
	t.Helper()
	cur := schema(t, schemas.HeapEmailEvent)
	if len(value) < 10 || value[0] != 0xC3 || value[1] != 0x01 || binary.LittleEndian.Uint64(value[2:10]) != avro.Fingerprint(cur) {
		t.Fatalf("ReadAsV2: % x... is not single-object encoding of the current version", value[:min(len(value), 10)])
	}
	r, err := avro.NewResolver(cur, schema(t, V2))
	if err != nil {
		t.Fatal(err)
	}
	datum, rest, err := r.Append(nil, value[10:])
	if err != nil || len(rest) > 0 {
		t.Fatalf("ReadAsV2: resolve: %v (%d bytes left)", err, len(rest))
	}
	c, err := goavro.NewCodec(V2)
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := c.NativeFromBinary(datum)
	if err != nil || len(rest) > 0 {
		t.Fatalf("ReadAsV2: goavro: %v (%d bytes left)", err, len(rest))
	}
	return native.(map[string]any)
}

// RegistryV2 starts a schema registry stand-in enforcing full transitive
// compatibility and returns a codec that writes through it (subjects
// auto-registered), the stand-in, and the id of V2 registered under
// v2Subject, as a newer build would have registered it.
func RegistryV2(t testing.TB, v2Subject string, subjects ...string) (*events.Codec, *registrytest.Server, uint32) {
	t.Helper()
	srv := registrytest.New(t, registrytest.Compatibility(avro.FullTransitive))
	cl, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	codec, err := events.NewRegistryCodec(ctx, events.RegistryConfig{Registry: cl, Subjects: subjects, AutoRegister: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := cl.Register(ctx, v2Subject, V2)
	if err != nil {
		t.Fatal(err)
	}
	return codec, srv, uint32(id)
}
