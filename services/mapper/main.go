// Command mapper maps mailchimp.raw to Avro heap.events, exactly once.
package main

import (
	"context"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

func main() {
	service.Main("mapper", func(ctx context.Context, d *service.Deps) error {
		return service.Group(ctx,
			func(ctx context.Context) error { return service.ServeAdmin(ctx, d) },
			func(ctx context.Context) error { return service.Mapper(ctx, d) },
		)
	})
}
