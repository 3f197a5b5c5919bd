// Package stacktest starts the all-in-one stack inside a test, the way
// kafkatest and redistest give a test its Kafka and Redis: Env is the
// stack's configuration for one test and Start runs it until the test ends.
// Tests of other packages (the status page's browser test) share it with
// pkg/stack's own.
package stacktest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack"
)

// Env is the stack's configuration for a test: defaults, listeners on free
// ports, a DATA_DIR and Redis of the test's own, real Kafka when
// KAFKA_BROKERS is set (under prefix, its topics created as ctl topics
// apply would), else the embedded one. The instance id is prefix.
func Env(t testing.TB, prefix string) config.Env {
	t.Helper()
	env, err := config.LoadEnv(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	env.IngressAddr, env.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	env.DataDir = t.TempDir()
	env.RedisURL, env.Redis = redistest.URL(t), redistest.Options(t)
	env.Partitions = 3
	if kafkatest.Real() {
		// A real cluster's topics come from ctl topics apply, not from the
		// services; on a secured one the stack runs as the services'
		// principal, holding only their ACLs.
		env.KafkaBrokers = kafkatest.Brokers(t)
		env.TopicPrefix = prefix
		env.Kafka = kafkatest.Security(t)
		kafkatest.TopicsFor(t, env.KafkaBrokers, prefix, int32(env.Partitions))
	}
	env.InstanceID = prefix
	return env
}

// Start runs the stack with env until t ends, and returns what it serves
// once it is up. It fails t if the stack does not start within 60 s, or
// does not stop within 30 s of the test's end, or returns an error.
func Start(t testing.TB, env config.Env) stack.Info {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	infoc := make(chan stack.Info, 1)
	done := make(chan error, 1)
	go func() { done <- stack.Run(ctx, env, zaptest.NewLogger(t), nil, func(i stack.Info) { infoc <- i }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stack.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("stack did not stop within 30s")
		}
	})
	select {
	case info := <-infoc:
		return info
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("stack.Run: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("stack did not start within 60s")
	}
	return stack.Info{}
}
