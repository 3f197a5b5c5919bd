package service

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
)

func anEvent() events.Event {
	return events.Event{ID: "e1", SourceID: "acme", AppID: "app", Name: events.NameOpen}
}

// TestEventCodec: without SCHEMA_REGISTRY_URL, single-object encoding;
// with it, the Confluent wire format and the schema registered under both
// event topics' subjects (basic auth); with auto-registration off and the
// schema absent, start-up stops with a line naming the subject.
func TestEventCodec(t *testing.T) {
	ctx := context.Background()
	log := zaptest.NewLogger(t)
	topics := kafka.NewTopics("team.")
	c, err := eventCodec(ctx, config.Env{}, topics, log)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Encode(anEvent()); b[0] != 0xC3 {
		t.Errorf("without a registry: % x...", b[:2])
	}

	srv := registrytest.New(t, registrytest.BasicAuth("key", "secret-123456"))
	env := config.Env{SchemaRegistryURL: srv.URL, SchemaRegistryUsername: "key", SchemaRegistryPassword: "secret-123456"}
	if _, err := eventCodec(ctx, env, topics, log); err == nil || !strings.Contains(err.Error(), "team.heap.events-value") ||
		!strings.Contains(err.Error(), "SCHEMA_REGISTRY_AUTO_REGISTER is false") {
		t.Fatalf("auto-registration off, schema absent: %v", err)
	}
	env.SchemaRegistryAutoRegister = true
	c, err = eventCodec(ctx, env, topics, log)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Encode(anEvent()); b[0] != 0x00 {
		t.Errorf("with a registry: % x...", b[:5])
	}
	for _, s := range []string{"team.heap.events-value", "team.heap.events.pending-value"} {
		if len(srv.Subject(s)) != 1 {
			t.Errorf("subject %s holds %v", s, srv.Subject(s))
		}
	}
	env.SchemaRegistryToken = "tok"
	if _, err := eventCodec(ctx, env, topics, log); err == nil || strings.Contains(err.Error(), "secret-123456") {
		t.Errorf("both basic and token: %v", err)
	}
}
