package main

import (
	"context"
	"flag"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

// rebuild restores the Redis cache (identities, campaigns, pending events)
// from the compacted topics, the truth behind it. The running materializer
// does the same by itself when it finds the cache gone.
func init() {
	register("rebuild", "rebuild   (restore the Redis cache from Kafka's compacted topics)", runRebuild)
}

func runRebuild(args []string) int {
	fs := flag.NewFlagSet("rebuild", flag.ExitOnError)
	fs.Parse(args)
	service.Main("ctl", func(ctx context.Context, d *service.Deps) error {
		return service.Rebuild(ctx, d)
	})
	return 0
}
