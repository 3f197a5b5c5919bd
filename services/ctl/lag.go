package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/lag"
	"github.com/twmb/franz-go/pkg/kadm"
)

// lag prints consumer lag per group and partition: what KEDA scales mapper
// and emitter on, and the first thing to look at when Heap falls behind.
func init() {
	register("lag", "lag [-group G ...]   (consumer lag per group and partition; default: the pipeline's groups)", runLag)
}

// pipelineGroups are the consumer groups the services run (pkg/service).
var pipelineGroups = groupsFlag{"mapper", "materializer", "emitter"}

type groupsFlag []string

func (g *groupsFlag) String() string     { return fmt.Sprint(*g) }
func (g *groupsFlag) Set(s string) error { *g = append(*g, s); return nil }

func runLag(args []string) int {
	fs := flag.NewFlagSet("lag", flag.ExitOnError)
	var k kafkaFlags
	k.register(fs)
	var groups groupsFlag
	fs.Var(&groups, "group", "consumer group, named like the topics without the prefix (repeatable; default: mapper, materializer, emitter)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Parse(args)
	if len(groups) == 0 {
		groups = slices.Clone(pipelineGroups)
	}
	for i, g := range groups {
		groups[i] = k.prefix + g
	}
	return k.withAdmin(*timeout, func(ctx context.Context, adm *kadm.Client) error {
		gs, err := lag.Read(ctx, adm, groups...)
		if err != nil {
			return err
		}
		if err := lag.Write(os.Stdout, gs); err != nil {
			return err
		}
		for _, g := range gs {
			if g.Err != nil {
				return fmt.Errorf("group %s: %w", g.Name, g.Err)
			}
		}
		return nil
	})
}
