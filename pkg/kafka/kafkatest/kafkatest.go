// Package kafkatest gives tests a Kafka protocol server: the broker(s) in
// KAFKA_BROKERS when set (a real Apache Kafka in CI), else an in-process
// kfake cluster per test. Each test gets its own topic prefix so tests can
// share one real broker and run in parallel.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// Real reports whether tests run against the brokers in KAFKA_BROKERS.
func Real() bool { return os.Getenv("KAFKA_BROKERS") != "" }

// Brokers returns seed brokers for t. With KAFKA_BROKERS set it fails the
// test when the broker does not answer; it never falls back silently.
func Brokers(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		brokers := strings.Split(env, ",")
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatalf("kafkatest: KAFKA_BROKERS=%s: %v", env, err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := cl.Ping(ctx); err != nil {
			t.Fatalf("kafkatest: KAFKA_BROKERS=%s does not answer: %v", env, err)
		}
		return brokers
	}
	c := NewCluster(t)
	return c.ListenAddrs()
}

// NewCluster starts an in-process kfake cluster that stops when t ends.
func NewCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Prefix returns a topic and group prefix unique to this test run.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := unsafe.ReplaceAllString(t.Name(), "_")
	if len(name) > 60 {
		name = name[:60]
	}
	return name + "." + hex.EncodeToString(b) + "."
}

// Topics creates the pipeline's topics under a fresh prefix and returns them.
func Topics(t testing.TB, brokers []string, partitions int32) kafka.Topics {
	t.Helper()
	topics := kafka.NewTopics(Prefix(t))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topics.Ensure(ctx, cl, partitions, -1); err != nil {
		t.Fatal(err)
	}
	return topics
}

// Consume reads committed records of topic from the start until it has want
// of them, failing t after within. It then polls once more briefly, so a test
// also sees records beyond want.
func Consume(t testing.TB, brokers []string, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kafkatest: %s: consumed %d of %d records within %s", topic, len(recs), want, within)
		}
		recs = append(recs, fs.Records()...)
	}
	extra, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	recs = append(recs, cl.PollFetches(extra).Records()...)
	return recs
}
