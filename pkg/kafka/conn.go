package kafka

// How every process reaches Kafka: seed brokers, TLS, SASL and a client id
// per role and instance. The settings are read from the environment by
// pkg/config under the names docs/CONNECTING.md lists; everything here goes
// through franz-go's own TLS dialer and pkg/sasl mechanisms.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/zap"
)

// Secret is a setting that never prints: its String is a placeholder, so a
// logged or formatted configuration cannot leak it.
type Secret string

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "[redacted]" }

// SASL mechanisms KAFKA_SASL_MECHANISM accepts.
const (
	MechPlain       = "PLAIN"
	MechScram256    = "SCRAM-SHA-256"
	MechScram512    = "SCRAM-SHA-512"
	MechOAuthBearer = "OAUTHBEARER"
	MechMSKIAM      = "AWS_MSK_IAM"
)

// Security is how a client authenticates and encrypts: the same settings in
// every service, ctl and the perf harness.
type Security struct {
	// ClientID is the base of every client's id; each client reports
	// <ClientID>-<role>-<instance>.
	ClientID string `env:"KAFKA_CLIENT_ID" envDefault:"mailchimp-heap"`

	TLSEnabled  bool   `env:"KAFKA_TLS_ENABLED"`
	TLSCAFile   string `env:"KAFKA_TLS_CA_FILE"`
	TLSCertFile string `env:"KAFKA_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"KAFKA_TLS_KEY_FILE"`
	TLSServer   string `env:"KAFKA_TLS_SERVER_NAME"`
	// TLSInsecureSkipVerify accepts any broker certificate; it logs a
	// warning at every start and is never for production.
	TLSInsecureSkipVerify bool `env:"KAFKA_TLS_INSECURE_SKIP_VERIFY"`

	SASLMechanism string `env:"KAFKA_SASL_MECHANISM"`
	SASLUsername  string `env:"KAFKA_SASL_USERNAME"`
	SASLPassword  Secret `env:"KAFKA_SASL_PASSWORD"`
	// SASLOAuthTokenFile holds the OAUTHBEARER token; it is read at every
	// authentication, so a token a sidecar renews is picked up.
	SASLOAuthTokenFile string `env:"KAFKA_SASL_OAUTH_TOKEN_FILE"`
}

// Validate reports settings that cannot work, naming the variable.
func (s Security) Validate() error {
	var errs []error
	if !s.TLSEnabled {
		for name, v := range map[string]string{"KAFKA_TLS_CA_FILE": s.TLSCAFile, "KAFKA_TLS_CERT_FILE": s.TLSCertFile,
			"KAFKA_TLS_KEY_FILE": s.TLSKeyFile, "KAFKA_TLS_SERVER_NAME": s.TLSServer} {
			if v != "" {
				errs = append(errs, fmt.Errorf("%s is set but KAFKA_TLS_ENABLED is not true", name))
			}
		}
		if s.TLSInsecureSkipVerify {
			errs = append(errs, errors.New("KAFKA_TLS_INSECURE_SKIP_VERIFY is set but KAFKA_TLS_ENABLED is not true"))
		}
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together (mTLS)"))
	}
	switch s.SASLMechanism {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" || s.SASLOAuthTokenFile != "" {
			errs = append(errs, errors.New("KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD or KAFKA_SASL_OAUTH_TOKEN_FILE is set without KAFKA_SASL_MECHANISM"))
		}
	case MechPlain, MechScram256, MechScram512:
		if s.SASLUsername == "" || s.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", s.SASLMechanism))
		}
	case MechOAuthBearer:
		if s.SASLOAuthTokenFile == "" {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_FILE"))
		}
	case MechMSKIAM:
		if !s.TLSEnabled {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs KAFKA_TLS_ENABLED=true (MSK's IAM listener is TLS only)"))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM", s.SASLMechanism))
	}
	if s.ClientID == "" {
		errs = append(errs, errors.New("KAFKA_CLIENT_ID must not be empty"))
	}
	return errors.Join(errs...)
}

// Describe says, without any secret, how clients connect: for start-up
// logs and error messages.
func (s Security) Describe() string {
	var parts []string
	switch {
	case !s.TLSEnabled:
		parts = append(parts, "plaintext")
	case s.TLSCertFile != "":
		parts = append(parts, "TLS with a client certificate")
	default:
		parts = append(parts, "TLS")
	}
	switch s.SASLMechanism {
	case "":
	case MechPlain, MechScram256, MechScram512:
		parts = append(parts, fmt.Sprintf("SASL %s as %q", s.SASLMechanism, s.SASLUsername))
	default:
		parts = append(parts, "SASL "+s.SASLMechanism)
	}
	return strings.Join(parts, ", ")
}

// Conn is a validated connection: seed brokers, the TLS configuration and
// SASL mechanism built once, and this instance's name for client ids.
type Conn struct {
	Brokers  []string
	Security Security
	Instance string

	tls  *tls.Config
	mech sasl.Mechanism
	log  *zap.Logger
}

// NewConn validates s, loads its certificates and prepares its mechanism.
// It warns (at every start) when certificate verification is off.
func NewConn(brokers []string, s Security, instance string, log *zap.Logger) (*Conn, error) {
	if len(brokers) == 0 {
		return nil, errors.New("KAFKA_BROKERS is required")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	c := &Conn{Brokers: brokers, Security: s, Instance: instance, log: log}
	if s.TLSEnabled {
		cfg, err := s.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		c.tls = cfg
		if s.TLSInsecureSkipVerify {
			log.Warn("KAFKA_TLS_INSECURE_SKIP_VERIFY is set: the brokers' certificates are not verified; anyone on the path can read and change what this process sends")
		}
	}
	c.mech = s.mechanism()
	return c, nil
}

// ClientID is the id a client of role reports: <KAFKA_CLIENT_ID>-<role>-<instance>.
func (c *Conn) ClientID(role string) string {
	id := c.Security.ClientID + "-" + role
	if c.Instance != "" {
		id += "-" + c.Instance
	}
	return id
}

// Opts are a client of role's options: brokers, client id, TLS, SASL, the
// logger, and the metadata age every client of the pipeline shares.
func (c *Conn) Opts(role string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID(role)),
		kgo.WithLogger(kzap.New(c.log.Named("kgo"), kzap.Level(kgo.LogLevelWarn))),
		// A produce error that needs fresh metadata (a moved leader, a new
		// topic's first writes) holds its batches until the next refresh,
		// which kgo spaces by this (default 5 s); the Java client's
		// retry.backoff.ms is 100 ms.
		kgo.MetadataMinAge(500 * time.Millisecond),
	}
	if c.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(c.tls.Clone()))
	}
	if c.mech != nil {
		opts = append(opts, kgo.SASL(c.mech))
	}
	return opts
}

// tlsConfig builds the client TLS configuration. The client certificate is
// re-read when its file changes, so a rotated certificate (cert-manager,
// Strimzi) is used on the next connection without a restart.
func (s Security) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServer, InsecureSkipVerify: s.TLSInsecureSkipVerify} //nolint:gosec // named setting, warned at start
	if s.TLSCAFile != "" {
		pem, err := os.ReadFile(s.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KAFKA_TLS_CA_FILE %s holds no PEM certificate", s.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if s.TLSCertFile != "" {
		kp := &keyPair{cert: s.TLSCertFile, key: s.TLSKeyFile}
		if _, err := kp.load(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.load() }
	}
	return cfg, nil
}

// keyPair is a client certificate loaded from files, reloaded when either
// file's modification time changes.
type keyPair struct {
	cert, key string
	mu        sync.Mutex
	stamp     [2]time.Time
	loaded    *tls.Certificate
}

func (k *keyPair) load() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var stamp [2]time.Time
	for i, f := range []string{k.cert, k.key} {
		if st, err := os.Stat(f); err == nil {
			stamp[i] = st.ModTime()
		}
	}
	if k.loaded != nil && stamp == k.stamp {
		return k.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		if k.loaded != nil { // mid-rotation: keep the last good pair
			return k.loaded, nil
		}
		return nil, fmt.Errorf("KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE: %w", err)
	}
	k.loaded, k.stamp = &c, stamp
	return k.loaded, nil
}

// mechanism is the configured SASL mechanism, nil for none.
func (s Security) mechanism() sasl.Mechanism {
	switch s.SASLMechanism {
	case MechPlain:
		return plain.Auth{User: s.SASLUsername, Pass: string(s.SASLPassword)}.AsMechanism()
	case MechScram256:
		return scram.Auth{User: s.SASLUsername, Pass: string(s.SASLPassword)}.AsSha256Mechanism()
	case MechScram512:
		return scram.Auth{User: s.SASLUsername, Pass: string(s.SASLPassword)}.AsSha512Mechanism()
	case MechOAuthBearer:
		file := s.SASLOAuthTokenFile
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := ReadToken(file, time.Now())
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: tok}, nil
		})
	case MechMSKIAM:
		return aws.ManagedStreamingIAM(mskCredentials())
	}
	return nil
}

// mskCredentials resolves AWS credentials through the SDK's standard chain
// (environment, shared config and profile, web identity as on EKS, container
// and instance roles), loaded once and cached and refreshed by the SDK.
func mskCredentials() func(context.Context) (aws.Auth, error) {
	var (
		once   sync.Once
		cfgErr error
		load   func(context.Context) (aws.Auth, error)
	)
	return func(ctx context.Context) (aws.Auth, error) {
		once.Do(func() {
			cfg, err := awsconfig.LoadDefaultConfig(context.WithoutCancel(ctx))
			if err != nil {
				cfgErr = fmt.Errorf("AWS_MSK_IAM: load AWS configuration: %w", err)
				return
			}
			load = func(ctx context.Context) (aws.Auth, error) {
				v, err := cfg.Credentials.Retrieve(ctx)
				if err != nil {
					return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: AWS credentials: %w", err)
				}
				return aws.Auth{AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken,
					UserAgent: "mailchimp-heap"}, nil
			}
		})
		if cfgErr != nil {
			return aws.Auth{}, cfgErr
		}
		return load(ctx)
	}
}
