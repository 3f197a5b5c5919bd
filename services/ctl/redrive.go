package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/replay"
)

// redrive sends dead letters back where they came from, once the reason
// they were refused is fixed (a source configured, a Heap outage over).
func init() {
	register("redrive", "redrive -topic heap.events.dlq|mailchimp.dlq [-reason SUBSTRING] [-source ID] [-from RFC3339] [-dry-run]", runRedrive)
}

func runRedrive(args []string) int {
	fs := flag.NewFlagSet("redrive", flag.ExitOnError)
	topic := fs.String("topic", "", "dead-letter topic, without TOPIC_PREFIX: heap.events.dlq or mailchimp.dlq; required")
	reason := fs.String("reason", "", "only letters whose reason contains this")
	source := fs.String("source", "", "only this source's letters")
	from := fs.String("from", "", "only letters dead-lettered at or after this time (RFC 3339)")
	dryRun := fs.Bool("dry-run", false, "count what would be redriven, send nothing")
	fs.Parse(args)
	at, err := parseTime("from", *from, false)
	if err == nil && *topic != "heap.events.dlq" && *topic != "mailchimp.dlq" {
		err = fmt.Errorf("-topic %q: heap.events.dlq or mailchimp.dlq", *topic)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl: redrive:", err)
		return 2
	}
	return withKafka(func(ctx context.Context, cl *kgo.Client, topics kafka.Topics, log *zap.Logger) error {
		opts := replay.Options{Topics: topics, Topic: topics.RawDLQ, Source: *source, From: at, Reason: *reason, DryRun: *dryRun, ClientOpts: cl.Opts()}
		if *topic == "heap.events.dlq" {
			opts.Topic = topics.EventsDLQ
		}
		var err error
		if opts.Codec, err = events.NewCodec(); err != nil {
			return err
		}
		res, err := replay.Redrive(ctx, cl, opts)
		fmt.Printf("redrive %s: %s\n", opts.Topic, res)
		if err != nil {
			return err
		}
		if opts.DryRun {
			fmt.Println("dry run: nothing was sent")
			return nil
		}
		fmt.Println("event ids are deterministic: a letter redriven twice, or one Heap already took, is still kept once; letters stay in the dead-letter topic")
		return nil
	})
}
