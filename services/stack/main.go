// Command stack runs ingress, mapper and emitter in one process on embedded
// Kafka, Redis and a Heap stand-in: `make run`.
package main

import (
	"fmt"
	"os"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack"
)

func main() {
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		fail(err)
	}
	log, err := service.NewLogger(env.LogLevel)
	if err != nil {
		fail(err)
	}
	defer log.Sync()
	ctx, stop := service.SignalContext()
	defer stop()
	if err := stack.Run(ctx, env, log, os.Stdout, nil); err != nil {
		log.Sync()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stack:", err)
	os.Exit(1)
}
