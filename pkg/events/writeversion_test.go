package events_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// withV2 are the versions of a build that reads version 2.
func withV2() events.Option {
	return events.Versions(append(append([]string{}, schemas.HeapEmailEventVersions...), eventstest.V2)...)
}

// v2Writer is a codec of a build that writes version 2 before its
// hand-written encoder knows it.
func v2Writer(t *testing.T) *events.Codec {
	t.Helper()
	c, err := events.NewCodec(withV2(), events.WriteVersion(eventstest.V2))
	if err != nil {
		t.Fatalf("NewCodec(WriteVersion(V2)): %v", err)
	}
	return c
}

// WriteVersion writes version 2 as goavro writes it: V2's fingerprint in
// the header, then the datum goavro reads with V2 (user_agent its default)
// and writes byte for byte the same. Readers of version 2 read it back;
// a build that does not list version 2 refuses it by fingerprint.
func TestWriteVersion(t *testing.T) {
	c := v2Writer(t)
	g, err := goavro.NewCodec(eventstest.V2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Framing(), "version 2") {
		t.Errorf("Framing() = %q, want version 2", c.Framing())
	}
	for _, e := range []events.Event{fullEvent(), {ID: "minimal"}} {
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0xC3 || b[1] != 0x01 || binary.LittleEndian.Uint64(b[2:10]) != eventstest.V2Fingerprint(t) {
			t.Fatalf("header % x, want C3 01 and V2's fingerprint %016x", b[:10], eventstest.V2Fingerprint(t))
		}
		native, rest, err := g.NativeFromBinary(b[10:])
		if err != nil || len(rest) > 0 {
			t.Fatalf("goavro with V2: %v (%d bytes left)", err, len(rest))
		}
		got := native.(map[string]any)
		if ua, ok := got["user_agent"]; !ok || ua != nil {
			t.Errorf("user_agent = %v (present %v), want the default null", ua, ok)
		}
		delete(got, "user_agent")
		if diff := cmp.Diff(events.Native(e), got); diff != "" {
			t.Errorf("goavro read with V2 (-written +read):\n%s", diff)
		}
		if want := eventstest.SingleObjectV2(t, e, ""); !bytes.Equal(b, want) {
			t.Errorf("Encode differs from goavro's V2 single-object encoding")
		}
		// AppendEncode appends after what dst holds.
		if a := c.AppendEncode([]byte("prefix"), e); !bytes.Equal(a, append([]byte("prefix"), b...)) {
			t.Errorf("AppendEncode did not append the same encoding")
		}
		// The writer and a release that writes version 1 but lists 2
		// read it as written; a build without version 2 refuses it.
		for name, r := range map[string]*events.Codec{"itself": c, "a v1 writer listing v2": eventstest.Codec(t)} {
			got, err := r.Decode(b)
			if err != nil || !cmp.Equal(e, got) {
				t.Errorf("%s: Decode = %+v, %v", name, got, err)
			}
		}
		if _, err := newCodec(t).Decode(b); !errors.Is(err, events.ErrUnknownSchema) {
			t.Errorf("a build without version 2: Decode = %v, want ErrUnknownSchema", err)
		}
	}
	// The codec is shared by a process's goroutines.
	var wg sync.WaitGroup
	want, _ := c.Encode(fullEvent())
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if b := c.AppendEncode(nil, fullEvent()); !bytes.Equal(b, want) {
					t.Error("concurrent AppendEncode differs")
					return
				}
			}
		})
	}
	wg.Wait()
}

// WriteVersion of the current schema changes nothing; one the codec does
// not read, or one that cannot hold the current schema's data, is refused.
func TestWriteVersionRefused(t *testing.T) {
	same, err := events.NewCodec(withV2(), events.WriteVersion(schemas.HeapEmailEvent))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := same.Encode(fullEvent())
	b, _ := newCodec(t).Encode(fullEvent())
	if !bytes.Equal(a, b) {
		t.Errorf("WriteVersion(current) changed the encoding")
	}
	if _, err := events.NewCodec(events.WriteVersion(eventstest.V2)); err == nil || !strings.Contains(err.Error(), "not among the versions") {
		t.Errorf("WriteVersion of an unlisted version: %v", err)
	}
	// user_agent without a default: the current schema reads it (the
	// field is dropped), but it cannot hold a current datum.
	noDefault := strings.Replace(eventstest.V2, `"default": null, "doc": "Version 2`, `"doc": "Version 2`, 1)
	if noDefault == eventstest.V2 {
		t.Fatal("the edit did not apply")
	}
	_, err = events.NewCodec(events.Versions(schemas.HeapEmailEvent, noDefault), events.WriteVersion(noDefault))
	if err == nil || !strings.Contains(err.Error(), "cannot hold every datum") || !strings.Contains(err.Error(), "user_agent") {
		t.Errorf("WriteVersion of a version adding a field without a default: %v", err)
	}
}

// A registry codec with WriteVersion registers version 2 under its
// subjects and writes its id; a build that lists only version 1 reads the
// record by fetching the schema by that id.
func TestWriteVersionRegistry(t *testing.T) {
	srv := registrytest.New(t)
	cl, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := events.NewRegistryCodec(ctx, events.RegistryConfig{Registry: cl, Subjects: subjects, AutoRegister: true},
		withV2(), events.WriteVersion(eventstest.V2))
	if err != nil {
		t.Fatal(err)
	}
	ids := srv.Subject(subjects[0])
	if len(ids) != 1 || len(srv.Subject(subjects[1])) != 1 {
		t.Fatalf("subjects hold %v and %v, want version 2 once", ids, srv.Subject(subjects[1]))
	}
	text, err := cl.Schema(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.Parse(text)
	if err != nil || avro.Fingerprint(s) != eventstest.V2Fingerprint(t) {
		t.Fatalf("registered schema is not V2: %v", err)
	}
	b, err := c.Encode(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	if want := eventstest.ConfluentV2(t, uint32(ids[0]), fullEvent(), ""); !bytes.Equal(b, want) {
		t.Errorf("Encode = % x..., want V2's id and goavro's V2 datum", b[:5])
	}
	old, err := registryCodec(t, srv, true) // lists version 1 only
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Learn(ctx, b); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*events.Codec{"itself": c, "a build listing only v1": old} {
		if got, err := r.Decode(b); err != nil || !cmp.Equal(fullEvent(), got) {
			t.Errorf("%s: Decode = %v", name, err)
		}
	}
}

// BenchmarkEncodeWriteVersion: encoding as version 2 through WriteVersion
// (encode, then resolve), against json.Marshal of the same struct, to
// compare with BenchmarkEncode.
func BenchmarkEncodeWriteVersion(b *testing.B) {
	c, err := events.NewCodec(withV2(), events.WriteVersion(eventstest.V2))
	if err != nil {
		b.Fatal(err)
	}
	e := benchEvent()
	vsFloor(b, func() error { _, err := json.Marshal(e); return err }, func() error { _, err := c.Encode(e); return err })
}
