package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/topology"
)

// topics applies the declared topic layout (deploy/topics.yaml): the
// services only create missing topics with uniform settings; this is where
// partitions, compaction, retention and min ISR are set and kept.
func init() {
	register("topics", "topics apply [-file deploy/topics.yaml] [-dry-run] [-replication N] [-config key=value ...]", runTopics)
}

type configFlag map[string]string

func (c configFlag) String() string { return fmt.Sprint(map[string]string(c)) }

func (c configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	c[k] = v
	return nil
}

func runTopics(args []string) int {
	if len(args) == 0 || args[0] != "apply" {
		fmt.Fprintln(os.Stderr, "usage: ctl topics apply [-file deploy/topics.yaml] [-dry-run] [-replication N] [-config key=value ...]")
		return 2
	}
	fs := flag.NewFlagSet("topics apply", flag.ExitOnError)
	var k kafkaFlags
	k.register(fs)
	file := fs.String("file", "", "topic layout (default: deploy/topics.yaml as this build embeds it)")
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	repl := fs.Int("replication", 0, "override every topic's replication factor (a single-broker development cluster: 1)")
	configs := configFlag{}
	fs.Var(configs, "config", "override a config on every topic, key=value (repeatable; e.g. min.insync.replicas=1 on one broker)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	fs.Parse(args[1:])

	layout, err := topology.Default(), error(nil)
	if *file != "" {
		layout, err = topology.Load(*file)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	name := *file
	if name == "" {
		name = "deploy/topics.yaml (embedded)"
	}
	return k.withAdmin(*timeout, func(ctx context.Context, adm *kadm.Client) error {
		changes, err := topology.Apply(ctx, adm, layout, topology.Options{
			Prefix: k.prefix, Replication: int16(*repl), Configs: configs, DryRun: *dry,
		})
		verb := "applied"
		if *dry {
			verb = "would apply"
		}
		for _, c := range changes {
			fmt.Printf("%s %s\n", verb, c)
		}
		if err == nil && len(changes) == 0 {
			fmt.Printf("%d topics match %s\n", len(layout.Topics), name)
		}
		return err
	})
}
