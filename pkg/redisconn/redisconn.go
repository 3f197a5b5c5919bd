// Package redisconn opens the Redis the pipeline caches in, as operators run
// it: one server (redis:// or rediss://), Sentinel with automatic failover,
// or a Cluster, with TLS from a custom CA and client certificates. Every
// mode is a go-redis UniversalClient, which every store takes.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Secret is a setting that never prints.
type Secret string

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "[redacted]" }

// Options are the settings beside REDIS_URL. REDIS_URL still carries the
// password, database and scheme (rediss:// for TLS) in every mode; its host
// is used only for a single server.
type Options struct {
	TLSCAFile   string `env:"REDIS_TLS_CA_FILE"`
	TLSCertFile string `env:"REDIS_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"REDIS_TLS_KEY_FILE"`

	SentinelAddrs    []string `env:"REDIS_SENTINEL_ADDRS" envSeparator:","`
	SentinelMaster   string   `env:"REDIS_SENTINEL_MASTER"`
	SentinelPassword Secret   `env:"REDIS_SENTINEL_PASSWORD"`

	ClusterAddrs []string `env:"REDIS_CLUSTER_ADDRS" envSeparator:","`
}

// Configured reports whether Redis is set at all: a URL, sentinels or a cluster.
func (o Options) Configured(url string) bool {
	return url != "" || len(o.SentinelAddrs) > 0 || len(o.ClusterAddrs) > 0
}

// Validate reports settings that cannot work, naming the variable.
func (o Options) Validate(url string) error {
	var errs []error
	if len(o.SentinelAddrs) > 0 && len(o.ClusterAddrs) > 0 {
		errs = append(errs, errors.New("REDIS_SENTINEL_ADDRS and REDIS_CLUSTER_ADDRS are exclusive"))
	}
	if (len(o.SentinelAddrs) > 0) != (o.SentinelMaster != "") {
		errs = append(errs, errors.New("REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER go together"))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"))
	}
	if url != "" && !strings.HasPrefix(url, "redis://") && !strings.HasPrefix(url, "rediss://") {
		errs = append(errs, errors.New("REDIS_URL must start with redis:// or rediss://"))
	}
	if (o.TLSCAFile != "" || o.TLSCertFile != "") && strings.HasPrefix(url, "redis://") {
		errs = append(errs, errors.New("REDIS_TLS_* files are set but REDIS_URL is redis://, not rediss://"))
	}
	return errors.Join(errs...)
}

// Mode names the deployment Open connects to: "server", "sentinel" or "cluster".
func (o Options) Mode() string {
	switch {
	case len(o.ClusterAddrs) > 0:
		return "cluster"
	case len(o.SentinelAddrs) > 0:
		return "sentinel"
	}
	return "server"
}

// Open returns a client for url and o. It does not dial; Ping tells
// whether Redis answers and is the deployment the settings say.
func Open(url string, o Options) (redis.UniversalClient, error) {
	if err := o.Validate(url); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	base := &redis.Options{}
	if url != "" {
		parsed, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis: parse REDIS_URL: %w", err) // go-redis does not quote the password
		}
		base = parsed
	}
	tlsOn := base.TLSConfig != nil || o.TLSCAFile != "" || o.TLSCertFile != ""
	if tlsOn {
		cfg, err := o.tlsConfig(base.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		base.TLSConfig = cfg
	}
	if base.TLSConfig != nil && o.Mode() != "server" && !urlHasHost(url) {
		// No host in REDIS_URL: verify each node against the address it is
		// dialled at, not ParseURL's default of localhost.
		base.TLSConfig.ServerName = ""
	}
	switch o.Mode() {
	case "cluster":
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: o.ClusterAddrs, Username: base.Username, Password: base.Password, TLSConfig: base.TLSConfig,
			// Reads go to masters: the cache's reads follow its own writes.
			ReadOnly: false,
		}), nil
	case "sentinel":
		fo := &redis.FailoverOptions{
			MasterName: o.SentinelMaster, SentinelAddrs: o.SentinelAddrs, SentinelPassword: string(o.SentinelPassword),
			Username: base.Username, Password: base.Password, DB: base.DB, TLSConfig: base.TLSConfig,
		}
		return redis.NewFailoverClient(fo), nil
	}
	if url == "" {
		return nil, errors.New("redis: REDIS_URL is required (or REDIS_SENTINEL_ADDRS, or REDIS_CLUSTER_ADDRS)")
	}
	return redis.NewClient(base), nil
}

// urlHasHost reports whether url names a host (rediss://:pass@/0 does not).
func urlHasHost(raw string) bool {
	u, err := neturl.Parse(raw)
	return err == nil && u.Hostname() != ""
}

// tlsConfig adds the CA and client certificate to the TLS settings the URL
// gave (its server name, its skip-verify query option).
func (o Options) tlsConfig(from *tls.Config) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if from != nil {
		cfg = from.Clone()
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
	}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("REDIS_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("REDIS_TLS_CA_FILE %s holds no PEM certificate", o.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if o.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// readyKey is the key readiness writes and reads back; its hash tag keeps
// it on one slot.
const readyKey = "mh:{readyz}:probe"

// ErrMisrouted is Ping's error when a plain client reaches a Redis Cluster
// node: keys on the other nodes would answer MOVED.
var ErrMisrouted = errors.New("REDIS_URL points at a Redis Cluster node: set REDIS_CLUSTER_ADDRS")

// Ping checks that Redis answers a real round trip (a write read back) and
// is the deployment the settings say: a plain client on a cluster node
// fails, rather than answering MOVED on every other key later.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	if _, plain := rdb.(*redis.ClusterClient); !plain {
		info, err := rdb.Info(ctx, "cluster").Result()
		if err != nil {
			return fmt.Errorf("redis: %w", explain(err))
		}
		if strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("redis: %w", ErrMisrouted)
		}
	}
	token := fmt.Sprint(time.Now().UnixNano())
	if err := rdb.Set(ctx, readyKey, token, time.Minute).Err(); err != nil {
		return fmt.Errorf("redis: write: %w", explain(err))
	}
	if err := rdb.Get(ctx, readyKey).Err(); err != nil {
		return fmt.Errorf("redis: read back: %w", explain(err))
	}
	return nil
}

// explain names the causes an operator must fix.
func explain(err error) error {
	var unknownCA x509.UnknownAuthorityError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("certificate not trusted: the server's certificate is not signed by a CA in REDIS_TLS_CA_FILE or the system pool")
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"):
		return fmt.Errorf("authentication failed: %v", err)
	case strings.Contains(msg, "MOVED"), strings.Contains(msg, "CROSSSLOT"):
		return fmt.Errorf("%w (%v)", ErrMisrouted, err)
	case strings.Contains(msg, "remote error: tls:"):
		return fmt.Errorf("client certificate refused (REDIS_TLS_CERT_FILE / REDIS_TLS_KEY_FILE): %v", err)
	}
	return err
}
