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
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/netutil"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/connect"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ingress"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/materializer"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/poller"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/readiness"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/statuspage"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/topology"
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
	Sources *source.Sources
	Log     *zap.Logger
	Brokers []string
	Conn    *kafka.Conn // how every client reaches Kafka: TLS, SASL, client ids
	Topics  kafka.Topics
	Redis   redis.UniversalClient
	Codec   *events.Codec
	Kafka   *kgo.Client // plain client: readiness, topic setup
	Metrics *metrics.Pipeline
	// Embedded is the all-in-one development stack: the status page and
	// "Connect Mailchimp" may then be used without an operator token.
	Embedded bool
	// Needs are the ACLs of the roles this process runs; readiness checks
	// them as start-up did.
	Needs []kafka.Access
}

// clientOpts are the options of a client of role: brokers, client id,
// TLS, SASL and logger.
func (d *Deps) clientOpts(role string) []kgo.Opt { return d.Conn.Opts(role) }

// roleOpts add the client metrics of a long-lived client in role.
func (d *Deps) roleOpts(role string) []kgo.Opt {
	return append(d.clientOpts(role), d.Metrics.KafkaHooks(role)...)
}

// preflightTimeout bounds start-up's and readiness's Kafka checks: a wrong
// password, an untrusted certificate or a missing ACL fails within it.
const preflightTimeout = 30 * time.Second

// Open builds Deps for the processes of roles (ingress, mapper, emitter):
// Redis client, Avro codec, Kafka client, and a preflight that the brokers
// accept this process's credentials, its principal holds the roles' ACLs
// and their topics exist as deploy/topics.yaml lays them out. Only with
// KAFKA_CREATE_TOPICS (the embedded stack) are missing topics created.
func Open(ctx context.Context, env config.Env, sources *source.Sources, log *zap.Logger, brokers []string, roles ...string) (*Deps, error) {
	if !env.Redis.Configured(env.RedisURL) {
		return nil, errors.New("REDIS_URL is required (or REDIS_SENTINEL_ADDRS, or REDIS_CLUSTER_ADDRS)")
	}
	instance := instanceID(env)
	conn, err := kafka.NewConn(brokers, env.Kafka, instance, log)
	if err != nil {
		return nil, err
	}
	rdb, err := redisconn.Open(env.RedisURL, env.Redis)
	if err != nil {
		return nil, err
	}
	codec, err := eventCodec(ctx, env, kafka.NewTopics(env.TopicPrefix), log)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	m := metrics.New()
	cl, err := kgo.NewClient(append(conn.Opts("admin"), m.KafkaHooks("admin")...)...)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	d := &Deps{Env: env, Sources: sources, Log: log, Brokers: brokers, Conn: conn, Topics: kafka.NewTopics(env.TopicPrefix),
		Redis: rdb, Codec: codec, Kafka: cl, Metrics: m}
	for _, role := range roles {
		needs, err := kafka.Needs(role, d.Topics, env.TopicPrefix, instance)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.Needs = append(d.Needs, needs...)
	}
	log.Info("kafka", zap.Strings("brokers", brokers), zap.String("security", env.Kafka.Describe()),
		zap.String("client_id", conn.ClientID("<role>")), zap.String("redis", env.Redis.Mode()))
	if err := d.setupTopics(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// eventCodec builds the Avro codec of heap.events and heap.events.pending:
// single-object encoding, or with SCHEMA_REGISTRY_URL the Confluent wire
// format, the schema registered under both topics' "<topic>-value"
// subjects (or, with SCHEMA_REGISTRY_AUTO_REGISTER=false, found there: a
// registry without it stops the service here). Either way it reads both.
func eventCodec(ctx context.Context, env config.Env, topics kafka.Topics, log *zap.Logger) (*events.Codec, error) {
	if env.SchemaRegistryURL == "" {
		c, err := events.NewCodec()
		if err != nil {
			return nil, err
		}
		log.Info("avro", zap.String("framing", c.Framing()))
		return c, nil
	}
	reg, err := registry.New(registry.Config{URL: env.SchemaRegistryURL, Username: env.SchemaRegistryUsername,
		Password: string(env.SchemaRegistryPassword), Token: string(env.SchemaRegistryToken), CAFile: env.SchemaRegistryCAFile})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	c, err := events.NewRegistryCodec(ctx, events.RegistryConfig{Registry: reg,
		Subjects: []string{topics.Events + "-value", topics.Pending + "-value"}, AutoRegister: env.SchemaRegistryAutoRegister})
	if err != nil {
		return nil, err
	}
	log.Info("avro", zap.String("framing", c.Framing()), zap.String("schema_registry", reg.Describe()))
	return c, nil
}

// setupTopics creates missing topics when allowed, then runs the preflight
// and compares the topics with the layout.
func (d *Deps) setupTopics(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if d.Env.CreateTopics {
		if err := d.Topics.Ensure(ctx, d.Kafka, d.Env.Partitions, d.Env.Replication); err != nil {
			return kafka.Explain(err)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, preflightTimeout)
	defer pcancel()
	found, err := kafka.Preflight(pctx, d.Kafka, d.Needs)
	if err != nil {
		return err
	}
	if d.Env.CreateTopics {
		return nil // laid out by TOPIC_PARTITIONS, not the layout: development only
	}
	findings, err := topology.Verify(ctx, kadm.NewClient(d.Kafka), topology.Default(), d.Env.TopicPrefix, found)
	if err != nil {
		return err
	}
	var fatal []string
	for _, f := range findings {
		if f.Fatal {
			fatal = append(fatal, f.String())
			continue
		}
		d.Log.Warn("topic layout", zap.String("finding", f.String()))
	}
	if len(fatal) > 0 {
		return fmt.Errorf("kafka: %s", strings.Join(fatal, "; "))
	}
	return nil
}

// Close releases the clients.
func (d *Deps) Close() {
	d.Kafka.Close()
	d.Redis.Close()
}

// Ready are the readiness checks: the Kafka preflight of start-up (brokers
// answer, credentials accepted, ACLs held, topics there) and a Redis round
// trip.
func (d *Deps) Ready() []readiness.Check {
	return []readiness.Check{
		{Name: "kafka", Fn: func(ctx context.Context) error {
			// Preflight's Metadata request is the round trip a ping would be.
			ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
			defer cancel()
			_, err := kafka.Preflight(ctx, d.Kafka, d.Needs)
			return err
		}},
		{Name: "redis", Fn: func(ctx context.Context) error { return redisconn.Ping(ctx, d.Redis) }},
	}
}

// InstanceID names this instance for transactional ids: INSTANCE_ID, else
// the host name (a pod name in Kubernetes, stable across restarts).
func (d *Deps) InstanceID() string { return instanceID(d.Env) }

func instanceID(env config.Env) string {
	if env.InstanceID != "" {
		return env.InstanceID
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}

// Ingress serves the webhook API on ln (the public listener) and its
// metrics and readiness details on admin (ADMIN_ADDR) until ctx ends.
func Ingress(ctx context.Context, d *Deps, ln, admin net.Listener) error {
	producer, err := kafka.OpenProducer(d.roleOpts("ingress"))
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	defer producer.Client.Close()
	h, err := d.publicHandler(producer)
	if err != nil {
		return err
	}
	return Group(ctx,
		func(ctx context.Context) error {
			return Serve(ctx, netutil.LimitListener(ln, d.Env.IngressMaxConns), h, d.Log)
		},
		func(ctx context.Context) error { return Serve(ctx, admin, Admin(d), d.Log) },
		func(ctx context.Context) error { return Poller(ctx, d) },
	)
}

// ServeIngress is the ingress service: Ingress on INGRESS_ADDR and ADMIN_ADDR.
func ServeIngress(ctx context.Context, d *Deps) error {
	ln, err := net.Listen("tcp", d.Env.IngressAddr)
	if err != nil {
		return fmt.Errorf("INGRESS_ADDR: %w", err)
	}
	admin, err := net.Listen("tcp", d.Env.AdminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("ADMIN_ADDR: %w", err)
	}
	return Ingress(ctx, d, ln, admin)
}

// publicHandler is what the internet reaches: the webhooks, the identity
// feed, the status page (behind its token) and "Connect Mailchimp".
func (d *Deps) publicHandler(producer kafka.Producer) (http.Handler, error) {
	hooks := ingress.NewHandler(ingress.Config{
		Sources:          d.Sources,
		Topic:            d.Topics.Raw,
		DLQTopic:         d.Topics.RawDLQ,
		ProduceTimeout:   d.Env.ProduceTimeout,
		MaxInflightBytes: d.Env.IngressMaxInflight,
		Log:              d.Log.Named("ingress"),
		Ready:            d.Ready(),
		Metrics:          d.Metrics,
	}, producer)
	mux := http.NewServeMux()
	page := statuspage.Handler(statuspage.Config{
		Sources: d.Sources, Status: status.NewStore(d.Redis), PublicURL: d.Env.PublicURL,
		OAuth: d.Env.OAuth(), Token: d.Env.StatusToken, Open: d.Embedded, Log: d.Log.Named("statuspage"),
	})
	if d.Env.StatusToken == "" && !d.Embedded {
		d.Log.Info("source status page off: set STATUS_TOKEN to turn it on")
	}
	mux.Handle("GET /v1/sources/{id}/status", page)
	mux.Handle("GET /sources/{id}", page)
	// The identity feed shares ingress's producer (acks=all, idempotent).
	mux.Handle(identityfeed.Path, identityfeed.NewHandler(identityfeed.Config{
		Sources: d.Sources, Topic: d.Topics.Identities, HeapURL: d.Env.HeapAPIURL,
		ProduceTimeout: d.Env.ProduceTimeout, Log: d.Log.Named("identityfeed"),
	}, producer))
	mux.Handle("/", hooks)
	if !d.Env.OAuth() {
		return mux, nil
	}
	store, err := d.tokenStore(producer.Client)
	if err != nil {
		return nil, err
	}
	key, _ := tokens.ParseKey(d.Env.TokenKey)
	mux.Handle("/connect/", connect.Handler(connect.Config{
		ClientID: d.Env.MailchimpClientID, ClientSecret: d.Env.MailchimpClientSecret,
		RedirectURL: d.Env.MailchimpRedirectURL, LoginURL: d.Env.MailchimpLoginURL,
		// The state key is derived from, never equal to, the token key.
		StateKey: hmacKey(key, "oauth-state"),
		Sources:  d.Sources, Tokens: store, States: status.NewStore(d.Redis), Log: d.Log.Named("connect"),
		// Only an operator starts "Connect Mailchimp"; the embedded stack
		// is the development exception.
		OperatorToken:        d.Env.StatusToken,
		AllowUnauthenticated: d.Embedded,
		Once:                 status.NewStore(d.Redis),
	}))
	return mux, nil
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
		ClientOpts:    d.clientOpts("poller"),
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
		ClientOpts:    d.clientOpts("materializer"),
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
		ClientOpts:    d.clientOpts("mapper"),
		Sessions:      d.Env.MapperSessions,
		SessionOpts:   func(i int) []kgo.Opt { return d.Metrics.KafkaSessionHooks("mapper", i) },
	}
}

// Admin is the health and readiness API of the mapper and emitter.
func Admin(d *Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", readiness.Live)
	mux.HandleFunc("GET /readyz", readiness.Handler(d.Ready()))
	mux.Handle("GET /metrics", d.Metrics.Handler())
	return mux
}

// Server bounds: a sender gets 10 s for its headers and 60 s for its whole
// request (a Mandrill batch of the largest size takes well under a second
// on any link Mandrill uses), an idle keep-alive connection is closed after
// 60 s, and headers are at most 64 KiB.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 90 * time.Second // the read, then up to PRODUCE_TIMEOUT for Kafka
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Serve serves h on ln until ctx ends, then drains for up to 10 s.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *zap.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: zap.NewStdLog(log.Named("http"))}
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
		ClientOpts: d.clientOpts("backfill"),
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
	return tokens.NewStore(key, d.Topics.Tokens, cl, d.clientOpts("tokens"))
}

func hmacKey(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
