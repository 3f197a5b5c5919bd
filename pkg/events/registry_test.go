package events_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

var subjects = []string{"heap.events-value", "heap.events.pending-value"}

func registryCodec(t *testing.T, srv *registrytest.Server, auto bool) (*events.Codec, error) {
	t.Helper()
	cl, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return events.NewRegistryCodec(context.Background(), events.RegistryConfig{Registry: cl, Subjects: subjects, AutoRegister: auto})
}

func mustRegister(t *testing.T, srv *registrytest.Server, subject, schema string) uint32 {
	t.Helper()
	cl, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	id, err := cl.Register(context.Background(), subject, schema)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id)
}

// Registry mode: the Confluent wire format, the schema registered under
// both topics' subjects, read back by this and any other instance; a
// single-object record on the same topic is read too.
func TestRegistryRoundTrip(t *testing.T) {
	srv := registrytest.New(t, registrytest.Compatibility(avro.FullTransitive))
	c, err := registryCodec(t, srv, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := srv.Subject(subjects[0])
	if len(ids) != 1 || fmt.Sprint(srv.Subject(subjects[1])) != fmt.Sprint(ids) {
		t.Fatalf("subjects hold %v and %v, want the one schema in both", ids, srv.Subject(subjects[1]))
	}
	b, err := c.Encode(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || binary.BigEndian.Uint32(b[1:5]) != uint32(ids[0]) {
		t.Fatalf("Encode() = % x..., want 00 and schema id %d", b[:5], ids[0])
	}
	if !strings.Contains(c.Framing(), fmt.Sprintf("schema id %d", ids[0])) {
		t.Errorf("Framing() = %q", c.Framing())
	}
	other, err := registryCodec(t, srv, true) // a second instance registers the same schema: same id
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*events.Codec{c, other} {
		got, err := r.Decode(b)
		if err != nil || !cmp.Equal(fullEvent(), got) {
			t.Errorf("Decode(confluent) = %v", err)
		}
		single, _ := newCodec(t).Encode(fullEvent())
		if got, err := r.Decode(single); err != nil || !cmp.Equal(fullEvent(), got) {
			t.Errorf("a registry codec reading single-object encoding: %v", err)
		}
	}
	if len(srv.Subject(subjects[0])) != 1 {
		t.Errorf("registering again added a version: %v", srv.Subject(subjects[0]))
	}
	// Without a registry the same record cannot be read: it says why.
	if _, err := newCodec(t).Decode(b); !errors.Is(err, events.ErrUnknownSchema) || !strings.Contains(err.Error(), "SCHEMA_REGISTRY_URL") {
		t.Errorf("a codec without a registry: %v", err)
	}
}

// A newer writer's schema, which this build does not list, is fetched by
// id once and resolved: its records are read, not refused.
func TestRegistryResolvesNewerVersion(t *testing.T) {
	srv := registrytest.New(t, registrytest.Compatibility(avro.FullTransitive))
	c, err := registryCodec(t, srv, true)
	if err != nil {
		t.Fatal(err)
	}
	v2 := mustRegister(t, srv, subjects[0], eventstest.V2) // a compatible evolution: accepted
	rec := eventstest.ConfluentV2(t, v2, fullEvent(), "Mozilla/5.0")
	if err := c.Learn(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := c.Decode(rec)
		if err != nil || !cmp.Equal(fullEvent(), got) {
			t.Fatalf("Decode(v2 by id) = %v, %v", got, err)
		}
		if _, err := c.RouteView(rec); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Requests(fmt.Sprintf("GET /schemas/ids/%d", v2)); n != 1 {
		t.Errorf("the schema was fetched %d times, want once", n)
	}
	// Its own id needs no fetch at all.
	own, _ := c.Encode(fullEvent())
	if _, err := c.Decode(own); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests(fmt.Sprintf("GET /schemas/ids/%d", binary.BigEndian.Uint32(own[1:5]))); n != 0 {
		t.Errorf("the codec's own id was fetched %d times", n)
	}
}

// An id the registry lacks is permanent for the record (not asked again at
// once); an unreachable registry is ErrSchemaUnavailable, and not
// remembered.
func TestRegistryFailures(t *testing.T) {
	srv := registrytest.New(t)
	c, err := registryCodec(t, srv, true)
	if err != nil {
		t.Fatal(err)
	}
	missing := eventstest.ConfluentV2(t, 999, fullEvent(), "")
	for range 2 {
		if err := c.Learn(context.Background(), missing); err != nil {
			t.Errorf("Learn of a missing id: %v, want nil (Decode reports it)", err)
		}
		_, err := c.Decode(missing)
		if !errors.Is(err, events.ErrUnknownSchema) || !strings.Contains(err.Error(), "schema id 999") {
			t.Errorf("Decode of a missing id: %v", err)
		}
	}
	if n := srv.Requests("GET /schemas/ids/999"); n != 1 {
		t.Errorf("a missing id was asked %d times, want once", n)
	}

	v2 := mustRegister(t, srv, subjects[0], eventstest.V2)
	rec := eventstest.ConfluentV2(t, v2, fullEvent(), "")
	srv.Fail(503)
	if err := c.Learn(context.Background(), rec); !errors.Is(err, events.ErrSchemaUnavailable) {
		t.Errorf("Learn while the registry fails: %v, want ErrSchemaUnavailable", err)
	}
	if err := c.Learn(context.Background(), rec); err != nil {
		t.Errorf("Learn once the registry is back: %v", err)
	}
	if _, err := c.Decode(rec); err != nil {
		t.Errorf("Decode after: %v", err)
	}

	// A schema the current one cannot read (no source_id): refused, why said.
	bad := strings.Replace(schemas.HeapEmailEvent, `{"name": "source_id", "type": "string"},`, ``, 1)
	srv.SetCompatibility("other-value", avro.None)
	badID := mustRegister(t, srv, "other-value", bad)
	_, err = c.Decode(eventstest.ConfluentV2(t, badID, fullEvent(), ""))
	if !errors.Is(err, events.ErrUnknownSchema) || !strings.Contains(err.Error(), "source_id") {
		t.Errorf("Decode of an unreadable schema id: %v", err)
	}
}

// Without auto-registration, start-up fails with a line naming the subject
// until the schema is registered; a registry refusing the schema as
// incompatible fails it too.
func TestRegistryStartUp(t *testing.T) {
	srv := registrytest.New(t)
	_, err := registryCodec(t, srv, false)
	if err == nil || !strings.Contains(err.Error(), "heap.events-value") || !strings.Contains(err.Error(), "SCHEMA_REGISTRY_AUTO_REGISTER is false") {
		t.Fatalf("NewRegistryCodec without the schema registered: %v", err)
	}
	text, _ := avro.Compact(schemas.HeapEmailEvent)
	id := mustRegister(t, srv, subjects[0], text)
	mustRegister(t, srv, subjects[1], text)
	c, err := registryCodec(t, srv, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Encode(fullEvent()); binary.BigEndian.Uint32(b[1:5]) != id {
		t.Errorf("writes id %d, want %d", binary.BigEndian.Uint32(b[1:5]), id)
	}

	strict := registrytest.New(t, registrytest.Compatibility(avro.FullTransitive))
	mustRegister(t, strict, subjects[0], `{"type":"record","name":"HeapEmailEvent","namespace":"dev.mailchimpheap","fields":[{"name":"other","type":"string"}]}`)
	if _, err := registryCodec(t, strict, true); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("registering over an incompatible subject: %v, want the 409", err)
	}
}
