// Package config loads the pipeline's settings: process settings from the
// environment and the per-source settings from SOURCES_FILE.
package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/caarlos0/env/v11"
)

// Env holds every process setting. Each field's env tag is the variable name;
// the README documents them all.
type Env struct {
	IngressAddr    string        `env:"INGRESS_ADDR" envDefault:":8080"`
	AdminAddr      string        `env:"ADMIN_ADDR" envDefault:":9090"`
	KafkaBrokers   []string      `env:"KAFKA_BROKERS" envSeparator:","`
	TopicPrefix    string        `env:"TOPIC_PREFIX"`
	Partitions     int32         `env:"TOPIC_PARTITIONS" envDefault:"6"`
	Replication    int16         `env:"TOPIC_REPLICATION" envDefault:"-1"`
	RedisURL       string        `env:"REDIS_URL"`
	DataDir        string        `env:"DATA_DIR" envDefault:"./data"`
	HeapAPIURL     string        `env:"HEAP_API_URL"`
	SourcesFile    string        `env:"SOURCES_FILE"`
	InstanceID     string        `env:"INSTANCE_ID"`
	LogLevel       string        `env:"LOG_LEVEL" envDefault:"info"`
	ProduceTimeout time.Duration `env:"PRODUCE_TIMEOUT" envDefault:"8s"`
	HeapTimeout    time.Duration `env:"HEAP_TIMEOUT" envDefault:"30s"`
	LedgerTTL      time.Duration `env:"LEDGER_TTL" envDefault:"24h"`
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
}

// OAuth reports whether "Connect Mailchimp" is configured.
func (e Env) OAuth() bool { return e.MailchimpClientID != "" }

// LoadEnv reads Env through lookup, so tests never touch the real environment.
func LoadEnv(lookup func(string) (string, bool)) (Env, error) {
	vars := map[string]string{}
	for _, k := range envNames() {
		if v, ok := lookup(k); ok {
			vars[k] = v
		}
	}
	var e Env
	if err := env.ParseWithOptions(&e, env.Options{Environment: vars}); err != nil {
		return Env{}, fmt.Errorf("config: %w", err)
	}
	return e, e.Validate()
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
	if e.IngressAddr == "" {
		errs = append(errs, errors.New("INGRESS_ADDR must not be empty"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}
