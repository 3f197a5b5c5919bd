package events

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// An id the registry lacked is asked about again by Learn once missAgain
// passed (a replica catching up), never by Decode, which after Learn needs
// no network.
func TestRegistryAsksAgainForAMissingID(t *testing.T) {
	defer func(d time.Duration) { missAgain = d }(missAgain)
	missAgain = 0
	ctx := context.Background()
	srv := registrytest.New(t)
	cl, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewRegistryCodec(ctx, RegistryConfig{Registry: cl, Subjects: []string{"s-value"}, AutoRegister: true})
	if err != nil {
		t.Fatal(err)
	}
	e := Event{ID: "x", Time: time.UnixMilli(1759413912345).UTC(), Lineage: Lineage{ReceivedAt: time.UnixMilli(0).UTC()}}
	rec := appendBinary([]byte{0, 0, 0, 0, 2}, e)
	if err := c.Learn(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Decode(rec); !errors.Is(err, ErrUnknownSchema) {
			t.Fatalf("Decode of missing id 2: %v", err)
		}
	}
	// Id 2 appears: the same schema with other documentation.
	doc := strings.Replace(schemas.HeapEmailEvent, "One Mailchimp engagement event", "One engagement event", 1)
	if id, err := cl.Register(ctx, "other-value", doc); err != nil || id != 2 {
		t.Fatalf("Register = %d, %v", id, err)
	}
	if _, err := c.Decode(rec); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("Decode asked again: %v", err)
	}
	if n := srv.Requests("GET /schemas/ids/2"); n != 1 {
		t.Errorf("id 2 asked %d times before Learn, want 1", n)
	}
	if err := c.Learn(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Decode(rec); err != nil || got.ID != "x" {
		t.Errorf("Decode after Learn: %+v, %v", got, err)
	}
	if n := srv.Requests("GET /schemas/ids/2"); n != 2 {
		t.Errorf("id 2 asked %d times, want 2", n)
	}
}
