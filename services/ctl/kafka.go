package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
)

// kafkaFlags are what the Kafka-only commands (topics, lag) need: brokers
// and the topic prefix, from the environment, overridable by flags. They
// deliberately skip SOURCES_FILE and Redis, so they run against a cluster
// before (or without) anything else of the pipeline.
type kafkaFlags struct {
	brokers, prefix string
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	env, _ := config.LoadEnv(os.LookupEnv) // errors resurface in admin()
	fs.StringVar(&k.brokers, "brokers", strings.Join(env.KafkaBrokers, ","), "seed brokers (default KAFKA_BROKERS)")
	fs.StringVar(&k.prefix, "prefix", env.TopicPrefix, "topic and group name prefix (default TOPIC_PREFIX)")
}

func (k *kafkaFlags) admin() (*kadm.Client, func(), error) {
	if k.brokers == "" {
		return nil, nil, fmt.Errorf("no brokers: set KAFKA_BROKERS or -brokers")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(k.brokers, ",")...))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}
