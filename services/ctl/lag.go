package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/lag"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
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
	adm, closeFn, err := k.admin()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	defer closeFn()
	ctx, stop := service.SignalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	gs, err := lag.Read(ctx, adm, groups...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	if err := lag.Write(os.Stdout, gs); err != nil {
		fmt.Fprintln(os.Stderr, "ctl:", err)
		return 1
	}
	for _, g := range gs {
		if g.Err != nil {
			return 1
		}
	}
	return 0
}
