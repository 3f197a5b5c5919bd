// Package stack runs ingress, mapper and emitter in one process on embedded
// defaults: in-process Kafka (kfake, persisted under DATA_DIR), Redis at
// REDIS_URL or embedded, and a Heap stand-in when HEAP_API_URL is unset.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Info describes a running stack.
type Info struct {
	IngressURL string
	AdminURL   string // /metrics, /readyz with reasons
	HeapURL    string
	Sink       *heaptest.Sink         // nil when HEAP_API_URL points at a real Heap
	Mailchimp  *mailchimptest.Service // the demo's Mailchimp stand-in, nil otherwise
	Sources    *source.Sources
	Brokers    []string
}

// Run starts the stack and blocks until ctx ends. ready, when set, is called
// once everything listens. out receives the human-readable banner.
func Run(ctx context.Context, env config.Env, log *zap.Logger, out io.Writer, ready func(Info)) error {
	if err := os.MkdirAll(env.DataDir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	s := &standIns{log: log}
	defer s.close()
	if err := s.start(&env); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", env.IngressAddr)
	if err != nil {
		return fmt.Errorf("INGRESS_ADDR: %w", err)
	}
	admin, err := net.Listen("tcp", env.AdminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("ADMIN_ADDR: %w", err)
	}
	defer admin.Close() // Serve closes it too; this covers the early returns
	ingressURL := "http://" + hostPort(ln.Addr())
	sources, demo, err := loadSources(env, ingressURL)
	if err == nil && demo {
		sources, err = s.mailchimp(sources)
	}
	if err != nil {
		ln.Close()
		return err
	}
	if env.InstanceID == "" {
		env.InstanceID = "stack"
	}
	d, err := service.Open(ctx, env, sources, log, s.brokers, "ingress", "mapper", "emitter")
	if err != nil {
		ln.Close()
		return err
	}
	defer d.Close()
	d.Embedded = true
	printBanner(out, ingressURL, sources, demo)
	info := Info{IngressURL: ingressURL, AdminURL: "http://" + hostPort(admin.Addr()), HeapURL: env.HeapAPIURL, Sink: s.sink, Mailchimp: s.mc, Sources: sources, Brokers: s.brokers}
	if ready != nil {
		ready(info)
	}
	fns := []func(context.Context) error{
		func(ctx context.Context) error { return service.Ingress(ctx, d, ln, admin) },
		func(ctx context.Context) error { return service.Mapper(ctx, d) },
		func(ctx context.Context) error { return service.Emitter(ctx, d) },
	}
	if env.Demo {
		src := sources.All()[0]
		fns = append(fns, func(ctx context.Context) error {
			if err := SendDemo(ctx, ingressURL, src); err != nil {
				log.Warn("demo traffic failed", zap.Error(err))
			} else {
				log.Info("demo traffic sent: fixture webhooks posted to ingress", zap.String("source", src.ID))
			}
			return nil
		})
	}
	return service.Group(ctx, fns...)
}

func hostPort(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}

// loadSources reads SOURCES_FILE, or creates (once, under DATA_DIR) a demo
// source with random secrets.
func loadSources(env config.Env, ingressURL string) (*source.Sources, bool, error) {
	if env.SourcesFile != "" {
		s, err := source.Load(env.SourcesFile)
		return s, false, err
	}
	path := filepath.Join(env.DataDir, "demo-sources.yaml")
	if data, err := os.ReadFile(path); err == nil {
		s, err := source.Parse(data)
		if err == nil {
			return s, true, nil
		}
	}
	demo := source.Source{
		ID:                 "demo",
		HeapAppID:          "demo-app",
		WebhookSecret:      randomHex(16),
		MandrillWebhookURL: ingressURL + "/webhooks/mandrill/demo",
		MandrillWebhookKey: randomHex(16),
		Events:             []string{source.EventOpen, source.EventClick, source.EventBounce, source.EventSent},
	}
	data, err := yaml.Marshal(map[string]any{"sources": []source.Source{demo}})
	if err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, false, fmt.Errorf("demo source: %w", err)
	}
	s, err := source.New(demo)
	return s, true, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// printBanner prints where to find the webhook URLs to paste into
// Mailchimp and Mandrill. It prints no secret: the audience URL's secret
// segment stays in the sources file and on the status page.
// It writes to the terminal, not the log: the audience URL holds a secret.
func printBanner(out io.Writer, ingressURL string, sources *source.Sources, demo bool) {
	if out == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nmailchimp-heap stack is up: ingress %s\n", ingressURL)
	for _, s := range sources.All() {
		fmt.Fprintf(&b, "source %s -> Heap app %s\n", s.ID, s.HeapAppID)
		if s.WebhookSecret != "" {
			fmt.Fprintf(&b, "  Mailchimp audience webhook: %s/webhooks/mailchimp/%s/<webhook_secret> (full URL: %s/sources/%s)\n", ingressURL, s.ID, ingressURL, s.ID)
		}
		if s.MandrillWebhookKey != "" {
			fmt.Fprintf(&b, "  Mandrill webhook:           %s/webhooks/mandrill/%s (registered as %s)\n", ingressURL, s.ID, s.MandrillWebhookURL)
		}
	}
	if demo {
		fmt.Fprintln(&b, "demo source settings (secrets, Mandrill key) are in DATA_DIR/demo-sources.yaml")
	}
	fmt.Fprintln(out, b.String())
}

// logAccepted logs what the Heap stand-in kept, identities hashed.
func logAccepted(log *zap.Logger) func(app string, evs []heaptest.Event) {
	return func(app string, evs []heaptest.Event) {
		for _, e := range evs {
			log.Info("heap received event",
				zap.String("app_id", app),
				zap.String("event", e.Event),
				zap.String("timestamp", e.Timestamp),
				zap.String("identity_key", events.EmailKey(e.Identity)[:16]),
				zap.Any("campaign_id", e.Properties["Campaign ID"]),
				zap.Any("campaign_title", e.Properties["Campaign Title"]),
				zap.String("idempotency_key", e.IdempotencyKey))
		}
	}
}

type kfakeLogger struct{ log *zap.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	if level <= kfake.LogLevelWarn && level != kfake.LogLevelNone {
		l.log.Warn(fmt.Sprintf(msg, args...))
	}
}
