package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// identities import loads a CSV export of (identity, email) into
// heap.identities: the identity feed's first load.
func init() {
	register("identities", "identities import -source ID -file export.csv [-dry-run]", runIdentities)
}

func runIdentities(args []string) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(os.Stderr, "usage: ctl identities import -source ID -file export.csv [-dry-run]")
		return 2
	}
	fs := flag.NewFlagSet("identities import", flag.ExitOnError)
	source := fs.String("source", "", "source id (its heap_app_id and email_property apply)")
	file := fs.String("file", "", "CSV with identity and email columns (header optional, any order)")
	dryRun := fs.Bool("dry-run", false, "check every row, record nothing")
	fs.Parse(args[1:])
	if *source == "" || *file == "" {
		fmt.Fprintln(os.Stderr, "ctl: identities import needs -source and -file")
		return 2
	}
	if err := importIdentities(*source, *file, *dryRun); err != nil {
		fmt.Fprintln(os.Stderr, "ctl: identities import:", err)
		var usage usageError
		if errors.As(err, &usage) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

func importIdentities(sourceID, path string, dryRun bool) error {
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	if env.SourcesFile == "" {
		return usageError{errors.New("SOURCES_FILE is required")}
	}
	sources, err := source.Load(env.SourcesFile)
	if err != nil {
		return err
	}
	src, ok := sources.Get(sourceID)
	if !ok {
		return usageError{fmt.Errorf("unknown source %q", sourceID)}
	}
	if src.JoinsOnIdentity() {
		return usageError{fmt.Errorf("source %q joins on identity (email_property: identity): there is nothing to import", sourceID)}
	}
	f, err := os.Open(path)
	if err != nil {
		return usageError{err}
	}
	defer f.Close()
	log, err := service.NewLogger(env.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	ctx, stop := service.SignalContext()
	defer stop()
	topics := kafka.NewTopics(env.TopicPrefix)
	cfg := identityfeed.ImportConfig{Source: src, Topic: topics.Identities, DryRun: dryRun}
	if !dryRun {
		conn, err := env.KafkaConn(hostname(), log)
		if err != nil {
			return err
		}
		pub, err := kafka.OpenProducer(conn.Opts("ctl"))
		if err != nil {
			return err
		}
		defer pub.Client.Close()
		cfg.Publisher = pub
	}
	res, err := identityfeed.Import(ctx, f, cfg)
	// Bad rows are reported by line and reason only: never the address.
	for _, b := range res.Bad {
		fmt.Fprintf(os.Stderr, "line %d: %s\n", b.Line, b.Reason)
	}
	if res.BadRows > len(res.Bad) {
		fmt.Fprintf(os.Stderr, "... and %d more bad rows\n", res.BadRows-len(res.Bad))
	}
	verb := "recorded"
	if dryRun {
		verb = "would record (dry run)"
	}
	fmt.Printf("source %s: %d rows, %s %d, skipped %d\n", src.ID, res.Rows, verb, res.Recorded, res.BadRows)
	return err
}
