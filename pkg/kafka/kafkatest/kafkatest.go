// Package kafkatest gives tests a Kafka protocol server: the broker(s) in
// KAFKA_BROKERS when set (a real Apache Kafka in CI), else an in-process
// kfake cluster per test. Each test gets its own topic prefix so tests can
// share one real broker and run in parallel.
//
// On a secured broker the services under test connect with the settings
// they read in production (KAFKA_TLS_*, KAFKA_SASL_*), as a principal that
// holds only the ACLs kafka.Needs lists; the tests' own clients (topic
// setup, ACL grants, reading results) connect as the super user named by
// KAFKA_TEST_ADMIN_USERNAME and KAFKA_TEST_ADMIN_PASSWORD.
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// Real reports whether tests run against the brokers in KAFKA_BROKERS.
func Real() bool { return os.Getenv("KAFKA_BROKERS") != "" }

// Name says which Kafka tests run on, for reports: kfake, or Apache Kafka
// and how the services reach it.
func Name() string {
	if !Real() {
		return "kfake"
	}
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil || env.Kafka.Describe() == "plaintext" {
		return "apache-kafka"
	}
	return "apache-kafka (" + env.Kafka.Describe() + ")"
}

// Secured reports whether the brokers in KAFKA_BROKERS are reached with
// SASL or TLS and a super user is named for the tests' own clients.
func Secured() bool { return Real() && os.Getenv("KAFKA_TEST_ADMIN_USERNAME") != "" }

// Security is how the services under test connect: the KAFKA_TLS_* and
// KAFKA_SASL_* settings of the environment when Real, else none.
func Security(t testing.TB) kafka.Security {
	t.Helper()
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	if !Real() {
		return kafka.Security{ClientID: env.Kafka.ClientID}
	}
	return env.Kafka
}

// Principal is the one the services under test run as (User:<KAFKA_SASL_USERNAME>,
// or KAFKA_TEST_PRINCIPAL for a certificate's).
func Principal(t testing.TB) string {
	if p := os.Getenv("KAFKA_TEST_PRINCIPAL"); p != "" {
		return p
	}
	return "User:" + Security(t).SASLUsername
}

// Opts are the options of a test's own client of brokers: as the super user
// on a secured broker, plain seed brokers otherwise.
func Opts(t testing.TB, brokers []string) []kgo.Opt {
	t.Helper()
	sec := Security(t)
	if Secured() {
		sec.SASLUsername = os.Getenv("KAFKA_TEST_ADMIN_USERNAME")
		sec.SASLPassword = kafka.Secret(os.Getenv("KAFKA_TEST_ADMIN_PASSWORD"))
		sec.TLSCertFile, sec.TLSKeyFile = "", ""
	}
	conn, err := kafka.NewConn(brokers, sec, "", zap.NewNop())
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	return conn.Opts("test")
}

// Brokers returns seed brokers for t. With KAFKA_BROKERS set it fails the
// test when the broker does not answer; it never falls back silently.
func Brokers(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		brokers := strings.Split(env, ",")
		cl, err := kgo.NewClient(Opts(t, brokers)...)
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
	return TopicsFor(t, brokers, Prefix(t), partitions)
}

// TopicsFor creates the pipeline's topics under prefix, as `ctl topics
// apply` would before the services start. On a secured broker it grants the
// services' principal the ACLs of every role under prefix, and only those.
func TopicsFor(t testing.TB, brokers []string, prefix string, partitions int32) kafka.Topics {
	t.Helper()
	topics := kafka.NewTopics(prefix)
	cl, err := kgo.NewClient(Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := topics.Ensure(ctx, cl, partitions, -1); err != nil {
		t.Fatal(err)
	}
	if Secured() {
		for _, role := range []string{"ingress", "mapper", "emitter"} {
			needs, err := kafka.Needs(role, topics, prefix, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := kafka.Grant(ctx, kadm.NewClient(cl), Principal(t), needs); err != nil {
				t.Fatal(err)
			}
		}
	}
	return topics
}

// Consume reads committed records of topic from the start until it has want
// of them, failing t after within. It then polls once more briefly, so a test
// also sees records beyond want.
func Consume(t testing.TB, brokers []string, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(Opts(t, brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
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
