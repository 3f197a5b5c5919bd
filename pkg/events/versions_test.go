package events_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// fingerprints pins every version in schemas/ to the fingerprint its
// records carry: a version once written is never edited. Version 1's is
// Apache Avro 1.12's SchemaNormalization.parsingFingerprint64.
var fingerprints = map[int]uint64{1: 0x6861a2abbedbd3e1}

func parseAll(t *testing.T, texts []string) []*avro.Schema {
	t.Helper()
	var out []*avro.Schema
	for i, text := range texts {
		s, err := avro.Parse(text)
		if err != nil {
			t.Fatalf("version %d: %v", i+1, err)
		}
		if err := avro.ValidateDefaults(s); err != nil {
			t.Fatalf("version %d: %v", i+1, err)
		}
		out = append(out, s)
	}
	return out
}

// TestSchemaVersionsCompatible is the compatibility check: every version
// in schemas/ reads every other's records (full transitive compatibility,
// by Apache Avro's rules: package avro), the current one among them, each
// pinned to its fingerprint; and so does the test-only version 2 candidate.
func TestSchemaVersionsCompatible(t *testing.T) {
	versions := parseAll(t, schemas.HeapEmailEventVersions)
	if err := avro.FullyCompatible(versions); err != nil {
		t.Errorf("schemas/ versions are not fully compatible:\n%v", err)
	}
	current := false
	for i, s := range versions {
		want, ok := fingerprints[i+1]
		if !ok {
			t.Errorf("version %d (fingerprint %016x) is not pinned in fingerprints", i+1, avro.Fingerprint(s))
		} else if got := avro.Fingerprint(s); got != want {
			t.Errorf("version %d fingerprint %016x, pinned %016x: a written version was edited", i+1, got, want)
		}
		current = current || schemas.HeapEmailEventVersions[i] == schemas.HeapEmailEvent
	}
	if !current {
		t.Error("schemas.HeapEmailEvent is not among schemas.HeapEmailEventVersions")
	}
	withV2 := parseAll(t, append(append([]string{}, schemas.HeapEmailEventVersions...), eventstest.V2))
	if err := avro.FullyCompatible(withV2); err != nil {
		t.Errorf("the version 2 candidate is not fully compatible:\n%v", err)
	}
	// The check catches the mistakes evolution invites.
	for name, bad := range map[string]string{
		"a field added without a default": strings.Replace(eventstest.V2, `"default": null, "doc": "Version 2`, `"doc": "Version 2`, 1),
		"a field removed that had none":   strings.Replace(schemas.HeapEmailEvent, `{"name": "source_id", "type": "string"},`, ``, 1),
		"a type changed":                  strings.Replace(schemas.HeapEmailEvent, `{"name": "partition", "type": "int"}`, `{"name": "partition", "type": "string"}`, 1),
		"a nullable field made required":  strings.Replace(schemas.HeapEmailEvent, `{"name": "ip", "type": ["null", "string"], "default": null}`, `{"name": "ip", "type": "string", "default": ""}`, 1),
	} {
		if bad == schemas.HeapEmailEvent || bad == eventstest.V2 {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if err := avro.FullyCompatible(parseAll(t, append(append([]string{}, schemas.HeapEmailEventVersions...), bad))); err == nil {
			t.Errorf("%s: passed the compatibility check", name)
		}
	}
}

// The single-object header is C3 01 and the spec's fingerprint of version
// 1, little-endian, as Java's BinaryMessageEncoder writes it.
func TestSingleObjectHeader(t *testing.T) {
	c := newCodec(t)
	b, err := c.Encode(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0xC3, 0x01, 0xe1, 0xd3, 0xdb, 0xbe, 0xab, 0xa2, 0x61, 0x68}
	if !bytes.Equal(b[:10], want) {
		t.Errorf("header % x, want % x", b[:10], want)
	}
	if c.Fingerprint() != 0x6861a2abbedbd3e1 {
		t.Errorf("Fingerprint() = %016x", c.Fingerprint())
	}
	// The datum after it is goavro's.
	g, err := goavro.NewCodec(schemas.HeapEmailEvent)
	if err != nil {
		t.Fatal(err)
	}
	datum, err := g.BinaryFromNative(nil, events.Native(fullEvent()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[10:], datum) {
		t.Errorf("datum differs from goavro's")
	}
}

// Old writer, new reader: a version 2 reader reads what this build writes,
// every field as written and user_agent its default.
func TestOldWriterNewReader(t *testing.T) {
	c := newCodec(t)
	for _, e := range []events.Event{fullEvent(), {ID: "minimal"}} {
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got := eventstest.ReadAsV2(t, b)
		if ua, ok := got["user_agent"]; !ok || ua != nil {
			t.Errorf("user_agent = %v (present %v), want the default null", ua, ok)
		}
		delete(got, "user_agent")
		if diff := cmp.Diff(events.Native(e), got); diff != "" {
			t.Errorf("a version 2 reader lost fields (-written +read):\n%s", diff)
		}
	}
}

// New writer, old reader: this build, knowing version 2, reads a version 2
// record without loss of any field it has, whatever the framing call.
func TestNewWriterOldReader(t *testing.T) {
	c := eventstest.Codec(t)
	for _, e := range []events.Event{fullEvent(), {ID: "minimal"}} {
		for _, ua := range []string{"", "Mozilla/5.0 (Macintosh)"} {
			v2 := eventstest.SingleObjectV2(t, e, ua)
			want := e
			want.Tags = append([]string(nil), e.Tags...)
			got, err := c.Decode(v2)
			if err != nil {
				t.Fatalf("Decode(v2): %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decode(v2) (-want +got):\n%s", diff)
			}
			view, err := c.DecodeView(v2)
			if diff := cmp.Diff(want, view); err != nil || diff != "" {
				t.Errorf("DecodeView(v2): %v\n%s", err, diff)
			}
			rt, err := c.RouteView(v2)
			if err != nil || rt.ID != e.ID || rt.AppID != e.AppID || rt.Identity != e.Identity || !rt.Time.Equal(e.Time) {
				t.Errorf("RouteView(v2) = %+v, %v", rt, err)
			}
			// Cut short or followed by more: an error, as for version 1.
			for _, bad := range [][]byte{v2[:len(v2)-1], append(bytes.Clone(v2), 0)} {
				if _, err := c.Decode(bad); err == nil {
					t.Errorf("Decode of a damaged v2 record passed")
				}
			}
		}
	}
	// Version 1 still takes the hand-written path and reads the same.
	b, _ := c.Encode(fullEvent())
	if got, err := c.Decode(b); err != nil || !cmp.Equal(fullEvent(), got) {
		t.Errorf("Decode(v1) = %v", err)
	}
}

// A build that does not know version 2 refuses its records, naming the
// fingerprint: the reason a dead letter carries.
func TestUnknownFingerprint(t *testing.T) {
	c := newCodec(t)
	v2 := eventstest.SingleObjectV2(t, fullEvent(), "ua")
	_, err := c.Decode(v2)
	if !errors.Is(err, events.ErrUnknownSchema) || errors.Is(err, events.ErrSchemaUnavailable) {
		t.Fatalf("Decode: %v, want ErrUnknownSchema", err)
	}
	if fp := fmt.Sprintf("%016x", eventstest.V2Fingerprint(t)); !strings.Contains(err.Error(), fp) {
		t.Errorf("error %q does not name the fingerprint %s", err, fp)
	}
	if _, err := c.RouteView(v2); !errors.Is(err, events.ErrUnknownSchema) {
		t.Errorf("RouteView: %v", err)
	}
	// A Confluent-framed record without a registry: unknown too, by id.
	conf := eventstest.ConfluentV2(t, 7, fullEvent(), "")
	if _, err := c.Decode(conf); !errors.Is(err, events.ErrUnknownSchema) || !strings.Contains(err.Error(), "schema id 7") {
		t.Errorf("Decode(confluent): %v", err)
	}
}

// A version the current schema cannot read fails the codec's build, not a
// record.
func TestIncompatibleVersionRefused(t *testing.T) {
	bad := strings.Replace(schemas.HeapEmailEvent, `"name": "HeapEmailEvent",`, `"name": "HeapEmailEvent", "aliases": [],`, 1)
	bad = strings.Replace(bad, `{"name": "source_id", "type": "string"},`, ``, 1)
	if _, err := events.NewCodec(events.Versions(schemas.HeapEmailEvent, bad)); err == nil || !strings.Contains(err.Error(), "source_id") {
		t.Errorf("NewCodec with a version lacking source_id: %v", err)
	}
}

// FuzzDecode: any bytes, of either framing and any known version, decode
// or fail; never panic.
func FuzzDecode(f *testing.F) {
	c := eventstest.Codec(f)
	v1, _ := c.Encode(fullEvent())
	f.Add(v1)
	f.Add(eventstest.SingleObjectV2(f, fullEvent(), "ua"))
	f.Add(binary.BigEndian.AppendUint32([]byte{0}, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := c.Decode(b)
		if err != nil {
			return
		}
		if _, err := c.RouteView(b); err != nil {
			t.Fatalf("Decode passed, RouteView: %v", err)
		}
		// What decodes encodes back to a record that decodes the same.
		again, err := c.Decode(c.AppendEncode(nil, e))
		if err != nil || !cmp.Equal(e, again) {
			t.Fatalf("re-encoded %+v: %v", e, err)
		}
	})
}
