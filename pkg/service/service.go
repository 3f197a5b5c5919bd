// Package service wires the pipeline's parts into runnable services. Each
// service's main and the all-in-one stack call the same functions here, so
// the parts are wired once.
package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/connect"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ingress"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/materializer"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/poller"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/statuspage"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

// NewLogger builds the process's JSON logger.
func NewLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}

// SignalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// Deps are the parts every service shares.
type Deps struct {
	Env     config.Env
	Sources *config.Sources
	Log     *zap.Logger
	Brokers []string
	Topics  kafka.Topics
	Redis   *redis.Client
	Codec   *events.Codec
	Kafka   *kgo.Client // plain client: readiness, topic setup
	Metrics *metrics.Pipeline
}

// clientOpts are every Kafka client's options: brokers and logger.
func (d *Deps) clientOpts() []kgo.Opt { return kafka.ClientOpts(d.Brokers, d.Log) }

// roleOpts add the client metrics of a long-lived client in role.
func (d *Deps) roleOpts(role string) []kgo.Opt {
	return append(d.clientOpts(), d.Metrics.KafkaHooks(role)...)
}

// Open builds Deps: Redis client, Avro codec, Kafka client, and the
// pipeline's topics (created when missing).
func Open(ctx context.Context, env config.Env, sources *config.Sources, log *zap.Logger, brokers []string) (*Deps, error) {
	if len(brokers) == 0 {
		return nil, errors.New("KAFKA_BROKERS is required")
	}
	if env.RedisURL == "" {
		return nil, errors.New("REDIS_URL is required")
	}
	rdb, err := redisconn.Open(env.RedisURL)
	if err != nil {
		return nil, err
	}
	codec, err := events.NewCodec()
	if err != nil {
		rdb.Close()
		return nil, err
	}
	m := metrics.New()
	cl, err := kgo.NewClient(append(kafka.ClientOpts(brokers, log), m.KafkaHooks("admin")...)...)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	d := &Deps{Env: env, Sources: sources, Log: log, Brokers: brokers, Topics: kafka.NewTopics(env.TopicPrefix),
		Redis: rdb, Codec: codec, Kafka: cl, Metrics: m}
	setupCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := d.Topics.Ensure(setupCtx, cl, env.Partitions, env.Replication); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close releases the clients.
func (d *Deps) Close() {
	d.Kafka.Close()
	d.Redis.Close()
}

// Ready are the readiness checks: Kafka and Redis reachable.
func (d *Deps) Ready() []ingress.Check {
	return []ingress.Check{
		{Name: "kafka", Fn: func(ctx context.Context) error { return kafka.Ping(ctx, d.Kafka) }},
		{Name: "redis", Fn: func(ctx context.Context) error { return redisconn.Ping(ctx, d.Redis) }},
	}
}

// InstanceID names this instance for transactional ids: INSTANCE_ID, else
// the host name (a pod name in Kubernetes, stable across restarts).
func (d *Deps) InstanceID() string {
	if d.Env.InstanceID != "" {
		return d.Env.InstanceID
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}

// Ingress serves the webhook API on ln until ctx ends.
func Ingress(ctx context.Context, d *Deps, ln net.Listener) error {
	producer, err := kgo.NewClient(append(d.roleOpts("ingress"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)...)
	if err != nil {
		return fmt.Errorf("ingress: kafka: %w", err)
	}
	defer producer.Close()
	h := ingress.NewHandler(ingress.Config{
		Sources:        d.Sources,
		Topic:          d.Topics.Raw,
		ProduceTimeout: d.Env.ProduceTimeout,
		Log:            d.Log.Named("ingress"),
		Ready:          d.Ready(),
		Metrics:        d.Metrics,
	}, ingress.KafkaPublisher{Client: producer})
	{
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", d.Metrics.Handler())
		page := statuspage.Handler(statuspage.Config{
			Sources: d.Sources, Status: status.NewStore(d.Redis), PublicURL: d.Env.PublicURL,
			OAuth: d.Env.OAuth(), Token: d.Env.StatusToken, Log: d.Log.Named("statuspage"),
		})
		mux.Handle("GET /v1/sources/{id}/status", page)
		mux.Handle("GET /sources/{id}", page)
		// The identity feed shares ingress's producer (acks=all, idempotent).
		mux.Handle(identityfeed.Path, identityfeed.NewHandler(identityfeed.Config{
			Sources: d.Sources, Topic: d.Topics.Identities, HeapURL: d.Env.HeapAPIURL,
			ProduceTimeout: d.Env.ProduceTimeout, Log: d.Log.Named("identityfeed"),
		}, identityfeed.KafkaPublisher{Client: producer}))
		mux.Handle("/", h)
		h = mux
	}
	if d.Env.OAuth() {
		store, err := d.tokenStore(producer)
		if err != nil {
			return err
		}
		key, _ := tokens.ParseKey(d.Env.TokenKey)
		mux := http.NewServeMux()
		mux.Handle("/connect/", connect.Handler(connect.Config{
			ClientID: d.Env.MailchimpClientID, ClientSecret: d.Env.MailchimpClientSecret,
			RedirectURL: d.Env.MailchimpRedirectURL, LoginURL: d.Env.MailchimpLoginURL,
			// The state key is derived from, never equal to, the token key.
			StateKey: hmacKey(key, "oauth-state"),
			Sources:  d.Sources, Tokens: store, States: status.NewStore(d.Redis), Log: d.Log.Named("connect"),
		}))
		mux.Handle("/", h)
		h = mux
	}
	return Group(ctx,
		func(ctx context.Context) error { return Serve(ctx, ln, h, d.Log) },
		func(ctx context.Context) error { return Poller(ctx, d) },
	)
}

// Poller polls the Reports API of the sources that have Mailchimp
// credentials (it runs inside ingress: both are Mailchimp's way in).
func Poller(ctx context.Context, d *Deps) error {
	var toks poller.Tokens
	if d.Env.TokenKey != "" {
		store, err := d.tokenStore(d.Kafka)
		if err != nil {
			return err
		}
		toks = store
	}
	return poller.Run(ctx, poller.Config{
		Tokens:        toks,
		Brokers:       d.Brokers,
		Topics:        d.Topics,
		TransactionID: d.Env.TopicPrefix + "poller-" + d.InstanceID(),
		Sources:       d.Sources,
		Owner:         lease.New(d.Redis, d.InstanceID()),
		States:        status.NewStore(d.Redis),
		Log:           d.Log.Named("poller"),
		Metrics:       d.Metrics,
		ClientOpts:    d.clientOpts(),
	})
}

// Mapper runs the mapper loop and the materializer (which keeps the Redis
// cache the mapper reads in step with Kafka) until ctx ends.
func Mapper(ctx context.Context, d *Deps) error {
	return Group(ctx,
		func(ctx context.Context) error { return mapperLoop(ctx, d) },
		func(ctx context.Context) error { return Materializer(ctx, d) },
	)
}

// Materializer keeps Redis in step with heap.identities, heap.events.pending
// and mailchimp.campaigns, and releases pending events.
func Materializer(ctx context.Context, d *Deps) error {
	return materializer.Run(ctx, d.materializerConfig())
}

func (d *Deps) materializerConfig() materializer.Config {
	return materializer.Config{
		Brokers:       d.Brokers,
		Topics:        d.Topics,
		Group:         d.Env.TopicPrefix + "materializer",
		TransactionID: d.Env.TopicPrefix + "materializer-" + d.InstanceID(),
		Holder:        d.InstanceID(),
		InstanceID:    d.Env.TopicPrefix + "materializer-" + d.InstanceID(),
		Sources:       d.Sources,
		Codec:         d.Codec,
		Redis:         d.Redis,
		Status:        status.NewStore(d.Redis),
		Metrics:       d.Metrics,
		Log:           d.Log.Named("materializer"),
		SweepInterval: d.Env.SweepInterval,
		ClientOpts:    d.clientOpts(),
		ConsumerOpts:  d.Metrics.KafkaHooks("materializer"),
	}
}

// Rebuild restores the Redis cache from the compacted topics.
func Rebuild(ctx context.Context, d *Deps) error {
	m, err := materializer.New(d.materializerConfig())
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Rebuild(ctx)
}

func mapperLoop(ctx context.Context, d *Deps) error {
	return mapper.Run(ctx, MapperConfig(d))
}

// MapperConfig is the mapper loop's configuration in the mapper service.
func MapperConfig(d *Deps) mapper.Config {
	return mapper.Config{
		Brokers:       d.Brokers,
		Topics:        d.Topics,
		Group:         d.Env.TopicPrefix + "mapper",
		TransactionID: d.Env.TopicPrefix + "mapper-" + d.InstanceID(),
		InstanceID:    d.Env.TopicPrefix + "mapper-" + d.InstanceID(),
		Sources:       d.Sources,
		Codec:         d.Codec,
		Identities:    identity.NewStore(d.Redis),
		Campaigns:     campaigns.NewStore(d.Redis),
		CacheReady:    materializer.CacheReady(d.Redis, d.Topics),
		Status:        status.NewStore(d.Redis),
		Log:           d.Log.Named("mapper"),
		Metrics:       d.Metrics,
		ClientOpts:    d.clientOpts(),
		Sessions:      d.Env.MapperSessions,
		SessionOpts:   func(i int) []kgo.Opt { return d.Metrics.KafkaSessionHooks("mapper", i) },
	}
}

// Emitter runs the emitter loop until ctx ends.
func Emitter(ctx context.Context, d *Deps) error {
	return emitter.Run(ctx, emitter.Config{
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
	})
}

// Admin is the health and readiness API of the mapper and emitter.
func Admin(d *Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", ingress.ReadyHandler(d.Ready()))
	mux.Handle("GET /metrics", d.Metrics.Handler())
	return mux
}

// Serve serves h on ln until ctx ends, then drains for up to 10 s.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *zap.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log.Named("http"))}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-errc
	return nil
}

// Backfill re-reads a source's history once: one campaign, or every campaign
// sent since a time (see poller.Backfill).
func Backfill(ctx context.Context, d *Deps, source string, since time.Time, campaign string) error {
	src, ok := d.Sources.Get(source)
	if !ok {
		return fmt.Errorf("unknown source %q", source)
	}
	if !src.Polls() {
		return fmt.Errorf("source %q has no Mailchimp connection to poll", source)
	}
	cfg := poller.Config{
		Brokers: d.Brokers, Topics: d.Topics, Sources: d.Sources, Log: d.Log.Named("backfill"),
		TransactionID: d.Env.TopicPrefix + "backfill-" + d.InstanceID(),
		Owner:         lease.New(d.Redis, d.InstanceID()), States: status.NewStore(d.Redis),
		ClientOpts: d.clientOpts(),
	}
	if d.Env.TokenKey != "" {
		store, err := d.tokenStore(d.Kafka)
		if err != nil {
			return err
		}
		cfg.Tokens = store
	}
	p, err := poller.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Backfill(ctx, src, since, campaign)
}

// tokenStore opens the encrypted OAuth token store, writing through cl.
func (d *Deps) tokenStore(cl *kgo.Client) (*tokens.Store, error) {
	key, err := tokens.ParseKey(d.Env.TokenKey)
	if err != nil {
		return nil, err
	}
	return tokens.NewStore(key, d.Topics.Tokens, cl, d.clientOpts())
}

func hmacKey(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
