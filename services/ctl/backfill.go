package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

// backfill re-reads Mailchimp history once, with original timestamps and
// without doubling what Heap already has.
func init() {
	register("backfill", "backfill -source ID [-since 2026-01-01T00:00:00Z] [-campaign ID]", runBackfill)
}

func runBackfill(args []string) int {
	fs := flag.NewFlagSet("backfill", flag.ExitOnError)
	source := fs.String("source", "", "source id")
	since := fs.String("since", "", "backfill campaigns sent since this time (RFC 3339)")
	campaign := fs.String("campaign", "", "backfill this campaign's whole activity")
	fs.Parse(args)
	var from time.Time
	if *since != "" {
		var err error
		if from, err = time.Parse(time.RFC3339, *since); err != nil {
			fmt.Fprintln(os.Stderr, "ctl: -since:", err)
			return 2
		}
	}
	if *source == "" || (from.IsZero() && *campaign == "") {
		fmt.Fprintln(os.Stderr, "ctl: backfill needs -source and -since or -campaign")
		return 2
	}
	service.Main("ctl", func(ctx context.Context, d *service.Deps) error {
		if err := service.Backfill(ctx, d, *source, from, *campaign); err != nil {
			return err
		}
		d.Log.Info("backfill published; the mapper and emitter deliver it", zap.String("source", *source))
		return nil
	})
	return 0
}
