// Command ingress receives Mailchimp webhooks and publishes them to mailchimp.raw.
package main

import "github.com/mailchimp-heap/mailchimp-heap/pkg/service"

func main() { service.Main("ingress", service.ServeIngress) }
