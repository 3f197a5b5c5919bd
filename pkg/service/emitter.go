package service

import (
	"context"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
)

// Emitter runs the emitter loop until ctx ends.
func Emitter(ctx context.Context, d *Deps) error {
	return emitter.Run(ctx, EmitterConfig(d))
}

// EmitterConfig is the emitter loop's configuration in the emitter service:
// the one place it is built, so the perf harness measures what runs.
func EmitterConfig(d *Deps) emitter.Config {
	return emitter.Config{
		Brokers:    d.Brokers,
		Topics:     d.Topics,
		Group:      d.Env.TopicPrefix + "emitter",
		InstanceID: d.Env.TopicPrefix + "emitter-" + d.InstanceID(),
		Sources:    d.Sources,
		Codec:      d.Codec,
		Heap:       &heap.Client{Timeout: d.Env.HeapTimeout},
		HeapURL:    d.Env.HeapAPIURL,
		Pacer:      pacing.NewApps(d.Redis),
		Ledger:     ledger.NewStore(d.Redis, d.Env.LedgerTTL),
		Status:     status.NewStore(d.Redis),
		Log:        d.Log.Named("emitter"),
		Metrics:    d.Metrics,
		ClientOpts: d.roleOpts("emitter"),
	}
}
