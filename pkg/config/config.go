// Package config loads the pipeline's settings: process settings from the
// environment and the per-source settings from SOURCES_FILE.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
)

// Env holds every process setting. Each field's env tag is the variable name;
// docs/CONFIGURATION.md documents them all.
type Env struct {
	IngressAddr string `env:"INGRESS_ADDR" envDefault:":8080"`
	// IngressMaxConns bounds ingress's open connections; IngressMaxInflight
	// the request-body bytes all its requests hold at once.
	IngressMaxConns    int      `env:"INGRESS_MAX_CONNS" envDefault:"1024"`
	IngressMaxInflight int64    `env:"INGRESS_MAX_INFLIGHT_BYTES" envDefault:"67108864"`
	AdminAddr          string   `env:"ADMIN_ADDR" envDefault:":9090"`
	KafkaBrokers       []string `env:"KAFKA_BROKERS" envSeparator:","`
	Kafka              kafka.Security
	Redis              redisconn.Options
	TopicPrefix        string        `env:"TOPIC_PREFIX"`
	Partitions         int32         `env:"TOPIC_PARTITIONS" envDefault:"6"`
	Replication        int16         `env:"TOPIC_REPLICATION" envDefault:"-1"`
	RedisURL           string        `env:"REDIS_URL"`
	DataDir            string        `env:"DATA_DIR" envDefault:"./data"`
	HeapAPIURL         string        `env:"HEAP_API_URL"`
	SourcesFile        string        `env:"SOURCES_FILE"`
	InstanceID         string        `env:"INSTANCE_ID"`
	LogLevel           string        `env:"LOG_LEVEL" envDefault:"info"`
	ProduceTimeout     time.Duration `env:"PRODUCE_TIMEOUT" envDefault:"8s"`
	HeapTimeout        time.Duration `env:"HEAP_TIMEOUT" envDefault:"30s"`
	LedgerTTL          time.Duration `env:"LEDGER_TTL" envDefault:"24h"`
	// SweepInterval: how often pending events are checked for an identity
	// that arrived unseen and for expiry.
	SweepInterval time.Duration `env:"PENDING_SWEEP_INTERVAL" envDefault:"30s"`
	// MapperSessions: transactional sessions (consumer group members) in
	// each mapper process; one maps while another waits on the broker.
	MapperSessions int  `env:"MAPPER_SESSIONS" envDefault:"2"`
	Demo           bool `env:"DEMO"`

	// "Connect Mailchimp" (OAuth 2).
	MailchimpClientID     string `env:"MAILCHIMP_CLIENT_ID"`
	MailchimpClientSecret string `env:"MAILCHIMP_CLIENT_SECRET"`
	MailchimpRedirectURL  string `env:"MAILCHIMP_REDIRECT_URL"`
	MailchimpLoginURL     string `env:"MAILCHIMP_LOGIN_URL" envDefault:"https://login.mailchimp.com"`
	TokenKey              string `env:"TOKEN_KEY"` // base64 of 32 bytes: encrypts OAuth tokens at rest

	// Source status page: ingress's public base URL for the webhook URLs it
	// shows (empty: the request's), and an optional bearer token guarding it.
	PublicURL   string `env:"PUBLIC_URL"`
	StatusToken string `env:"STATUS_TOKEN"`

	// CreateTopics lets a process create the topics it finds missing
	// (the embedded stack; development). Otherwise topics come from
	// `ctl topics apply` and a missing one stops the service at start.
	CreateTopics bool `env:"KAFKA_CREATE_TOPICS"`

	// Schema Registry (the Confluent REST API; Apicurio's ccompat API):
	// with a URL, heap.events and heap.events.pending values use the
	// Confluent wire format and the schema is registered under
	// "<topic>-value"; without one, Avro single-object encoding. Basic
	// authentication or a bearer token, not both; a CA file for https.
	SchemaRegistryURL      string       `env:"SCHEMA_REGISTRY_URL"`
	SchemaRegistryUsername string       `env:"SCHEMA_REGISTRY_USERNAME"`
	SchemaRegistryPassword kafka.Secret `env:"SCHEMA_REGISTRY_PASSWORD"`
	SchemaRegistryToken    kafka.Secret `env:"SCHEMA_REGISTRY_TOKEN"`
	SchemaRegistryCAFile   string       `env:"SCHEMA_REGISTRY_CA_FILE"`
	// SchemaRegistryAutoRegister registers the schema at start; off, a
	// service whose schema the registry lacks stops at start.
	SchemaRegistryAutoRegister bool `env:"SCHEMA_REGISTRY_AUTO_REGISTER" envDefault:"true"`
}

// KafkaConn is how this process reaches Kafka (KAFKA_BROKERS and the
// KAFKA_TLS_* and KAFKA_SASL_* settings), its clients named for instance.
func (e Env) KafkaConn(instance string, log *zap.Logger) (*kafka.Conn, error) {
	return kafka.NewConn(e.KafkaBrokers, e.Kafka, instance, log)
}

// OAuth reports whether "Connect Mailchimp" is configured.
func (e Env) OAuth() bool { return e.MailchimpClientID != "" }

// LoadEnv reads Env through lookup, so tests never touch the real
// environment. Every NAME may instead be given as NAME_FILE, the path of a
// file holding the value (a mounted Kubernetes secret); its trailing
// newline is dropped. Setting both is an error.
func LoadEnv(lookup func(string) (string, bool)) (Env, error) {
	vars, err := Vars(lookup, envNames())
	if err != nil {
		return Env{}, fmt.Errorf("config: %w", err)
	}
	var e Env
	if err := env.ParseWithOptions(&e, env.Options{Environment: vars}); err != nil {
		return Env{}, fmt.Errorf("config: %w", err)
	}
	return e, e.Validate()
}

// Vars reads names through lookup, each from NAME or from the file NAME_FILE
// names. Errors name the variable and file, never a value.
func Vars(lookup func(string) (string, bool), names []string) (map[string]string, error) {
	vars := map[string]string{}
	var errs []error
	for _, k := range names {
		v, ok := lookup(k)
		file, fromFile := lookup(k + "_FILE")
		switch {
		case ok && fromFile && file != "":
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set", k, k))
		case fromFile && file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", k, err))
				continue
			}
			vars[k] = strings.TrimRight(string(b), "\r\n")
		case ok:
			vars[k] = v
		}
	}
	return vars, errors.Join(errs...)
}

func envNames() []string {
	names := []string{}
	params, _ := env.GetFieldParams(&Env{})
	for _, p := range params {
		names = append(names, p.Key)
	}
	return names
}

// Validate reports settings that cannot work.
func (e Env) Validate() error {
	var errs []error
	if e.Partitions < 1 {
		errs = append(errs, errors.New("TOPIC_PARTITIONS must be at least 1"))
	}
	if e.MapperSessions < 1 {
		errs = append(errs, errors.New("MAPPER_SESSIONS must be at least 1"))
	}
	if e.ProduceTimeout <= 0 {
		errs = append(errs, errors.New("PRODUCE_TIMEOUT must be positive"))
	}
	if e.HeapTimeout <= 0 {
		errs = append(errs, errors.New("HEAP_TIMEOUT must be positive"))
	}
	if e.LedgerTTL <= 0 {
		errs = append(errs, errors.New("LEDGER_TTL must be positive"))
	}
	if e.OAuth() && (e.MailchimpClientSecret == "" || e.MailchimpRedirectURL == "" || e.TokenKey == "") {
		errs = append(errs, errors.New("MAILCHIMP_CLIENT_ID needs MAILCHIMP_CLIENT_SECRET, MAILCHIMP_REDIRECT_URL and TOKEN_KEY"))
	}
	if err := e.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := e.Redis.Validate(e.RedisURL); err != nil {
		errs = append(errs, err)
	}
	if e.IngressMaxConns < 1 || e.IngressMaxInflight < 1<<20 {
		errs = append(errs, errors.New("INGRESS_MAX_CONNS must be at least 1 and INGRESS_MAX_INFLIGHT_BYTES at least 1048576"))
	}
	if e.IngressAddr == "" {
		errs = append(errs, errors.New("INGRESS_ADDR must not be empty"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}
