// Command ingress receives Mailchimp webhooks and publishes them to mailchimp.raw.
package main

import (
	"context"
	"fmt"
	"net"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

func main() {
	service.Main("ingress", func(ctx context.Context, d *service.Deps) error {
		ln, err := net.Listen("tcp", d.Env.IngressAddr)
		if err != nil {
			return fmt.Errorf("INGRESS_ADDR: %w", err)
		}
		return service.Ingress(ctx, d, ln)
	})
}
