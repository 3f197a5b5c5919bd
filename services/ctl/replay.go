package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/replay"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

// replay sends a time range of mailchimp.raw (or heap.events) through the
// pipeline again; deterministic ids keep Heap at one copy.
func init() {
	register("replay", "replay [-topic mailchimp.raw|heap.events] [-source ID] -from RFC3339 [-to RFC3339] [-new-keys] [-dry-run]", runReplay)
}

func runReplay(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ExitOnError)
	topic := fs.String("topic", "mailchimp.raw", "topic to replay, without TOPIC_PREFIX: mailchimp.raw (mapped again) or heap.events (delivered again)")
	source := fs.String("source", "", "only this source's records")
	from := fs.String("from", "", "records with a timestamp at or after this time (RFC 3339); required")
	to := fs.String("to", "", "records before this time (RFC 3339); default: up to now")
	newKeys := fs.Bool("new-keys", false, "give the replayed events new ids: Heap keeps a SECOND copy of each")
	dryRun := fs.Bool("dry-run", false, "count what would be replayed, send nothing")
	fs.Parse(args)
	var opts replay.Options
	var err error
	if opts.From, err = parseTime("from", *from, true); err == nil {
		opts.To, err = parseTime("to", *to, false)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl: replay:", err)
		return 2
	}
	opts.Source, opts.NewKeys, opts.DryRun = *source, *newKeys, *dryRun
	if *newKeys {
		fmt.Fprintln(os.Stderr, "ctl: WARNING: -new-keys gives every replayed event a new idempotency key: Heap will keep a second copy of each, next to the one it already has.")
	}
	return withKafka(func(ctx context.Context, cl *kgo.Client, topics kafka.Topics, log *zap.Logger) error {
		opts.Topics, opts.Topic = topics, topics.Raw
		if *topic == "heap.events" {
			opts.Topic = topics.Events
		} else if *topic != "mailchimp.raw" {
			return fmt.Errorf("-topic %s: mailchimp.raw or heap.events", *topic)
		}
		opts.ClientOpts = cl.Opts()
		var err error
		if opts.Codec, err = events.NewCodec(); err != nil {
			return err
		}
		res, err := replay.Replay(ctx, cl, opts)
		fmt.Printf("replay %s: %s\n", opts.Topic, res)
		if err != nil {
			return err
		}
		switch {
		case opts.DryRun:
			fmt.Println("dry run: nothing was sent")
		case opts.NewKeys:
			fmt.Printf("new keys (replay-salt %s): Heap receives these events as new ones\n", res.Salt)
		default:
			fmt.Println("the same event ids as the first time: the emitter's ledger and Heap's idempotency key keep one copy; running this again is harmless")
		}
		return nil
	})
}

func parseTime(name, v string, required bool) (time.Time, error) {
	if v == "" {
		if required {
			return time.Time{}, fmt.Errorf("-%s is required", name)
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("-%s: %w", name, err)
	}
	return t, nil
}

// withKafka runs fn with a producing client (idempotent, acks=all) built
// from KAFKA_BROKERS and TOPIC_PREFIX alone, under a context SIGINT/SIGTERM
// cancels; it returns the exit code.
func withKafka(fn func(ctx context.Context, cl *kgo.Client, topics kafka.Topics, log *zap.Logger) error) int {
	env, err := config.LoadEnv(os.LookupEnv)
	if err == nil && len(env.KafkaBrokers) == 0 {
		err = errors.New("KAFKA_BROKERS is required")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 2
	}
	log, err := service.NewLogger(env.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 2
	}
	defer log.Sync()
	conn, err := env.KafkaConn(hostname(), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 2
	}
	cl, err := kgo.NewClient(append(conn.Opts("ctl"), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl: kafka:", err)
		return 1
	}
	defer cl.Close()
	ctx, stop := service.SignalContext()
	defer stop()
	if err := fn(ctx, cl, kafka.NewTopics(env.TopicPrefix), log); err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	return 0
}
