package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

// hostname names this ctl run in its Kafka client id.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}

// kafkaFlags are what the Kafka-only commands (topics, lag) need: brokers
// and the topic prefix, from the environment, overridable by flags. They
// deliberately skip SOURCES_FILE and Redis, so they run against a cluster
// before (or without) anything else of the pipeline.
type kafkaFlags struct {
	brokers, prefix string
	env             config.Env
	envErr          error
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	env, err := config.LoadEnv(os.LookupEnv) // errors resurface in admin()
	k.env, k.envErr = env, err
	fs.StringVar(&k.brokers, "brokers", strings.Join(env.KafkaBrokers, ","), "seed brokers (default KAFKA_BROKERS)")
	fs.StringVar(&k.prefix, "prefix", env.TopicPrefix, "topic and group name prefix (default TOPIC_PREFIX)")
}

func (k *kafkaFlags) admin() (*kadm.Client, func(), error) {
	if k.brokers == "" {
		return nil, nil, fmt.Errorf("no brokers: set KAFKA_BROKERS or -brokers")
	}
	if k.envErr != nil {
		return nil, nil, k.envErr
	}
	log, err := service.NewLogger(k.env.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	conn, err := kafka.NewConn(strings.Split(k.brokers, ","), k.env.Kafka, hostname(), log)
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(conn.Opts("ctl")...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// withAdmin runs fn with an admin client under a context that SIGINT or
// SIGTERM cancels and timeout ends; it returns the exit code, printing the
// error fn returns.
func (k *kafkaFlags) withAdmin(timeout time.Duration, fn func(ctx context.Context, adm *kadm.Client) error) int {
	adm, closeFn, err := k.admin()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	defer closeFn()
	ctx, stop := service.SignalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := fn(ctx, adm); err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	return 0
}
