// Command emitter delivers heap.events to Heap's Track API.
package main

import (
	"context"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

func main() {
	service.Main("emitter", func(ctx context.Context, d *service.Deps) error {
		return service.Group(ctx,
			func(ctx context.Context) error { return service.ServeAdmin(ctx, d) },
			func(ctx context.Context) error { return service.Emitter(ctx, d) },
		)
	})
}
