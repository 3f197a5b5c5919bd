package kafka_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/tlstest"
)

// secured is a kfake cluster behind TLS with SCRAM-SHA-512 and ACLs: an
// admin super user, and the services' user "mh" holding no ACL yet.
type secured struct {
	brokers []string
	ca      *tlstest.CA
	admin   *kadm.Client
}

func newSecured(t *testing.T) *secured {
	t.Helper()
	ca := tlstest.NewCA(t, "test")
	server := ca.Issue(t, "broker", "127.0.0.1", "localhost")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(ca.ServerConfig(server, false)), kfake.EnableSASL(),
		kfake.Superuser(kafka.MechScram512, "admin", "admin-secret"), kfake.User(kafka.MechScram512, "mh", "mh-secret"),
		kfake.EnableACLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &secured{brokers: c.ListenAddrs(), ca: ca}
	conn, err := kafka.NewConn(s.brokers, kafka.Security{ClientID: "test", TLSEnabled: true, TLSCAFile: ca.CAFile,
		SASLMechanism: kafka.MechScram512, SASLUsername: "admin", SASLPassword: "admin-secret"}, "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(conn.Opts("admin")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s.admin = kadm.NewClient(cl)
	return s
}

func (s *secured) security(user, pass string) kafka.Security {
	return kafka.Security{ClientID: "mailchimp-heap", TLSEnabled: true, TLSCAFile: s.ca.CAFile,
		SASLMechanism: kafka.MechScram512, SASLUsername: user, SASLPassword: kafka.Secret(pass)}
}

// preflight runs kafka.Preflight for role as sec, bounded by the 30 s the
// services allow it, and fails t when it did not end by itself.
func preflight(t *testing.T, brokers []string, sec kafka.Security, role string, topics kafka.Topics) error {
	t.Helper()
	conn, err := kafka.NewConn(brokers, sec, "pod-0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(conn.Opts(role)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	needs, err := kafka.Needs(role, topics, "", "pod-0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kafka.Preflight(ctx, cl, needs)
	if ctx.Err() != nil {
		t.Fatalf("preflight as %s did not end within 30 s (a hang or a retry loop): %v", role, err)
	}
	return err
}

// A wrong password is tested on Apache Kafka (pkg/kafka/secured_test.go):
// kfake closes the connection where Kafka answers SASL_AUTHENTICATION_FAILED.
func TestPreflight(t *testing.T) {
	s := newSecured(t)
	topics := kafka.NewTopics("")
	ctx := context.Background()
	if _, err := s.admin.CreateTopics(ctx, 3, 1, nil, topics.Events, topics.EventsDLQ); err != nil {
		t.Fatal(err)
	}
	other := tlstest.NewCA(t, "other")
	grantEmitter := func(t *testing.T) {
		needs, _ := kafka.Needs("emitter", topics, "", "")
		if err := kafka.Grant(ctx, s.admin, "User:mh", needs); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		sec   func() kafka.Security
		role  string
		grant bool
		want  error
		line  string
	}{
		{"untrusted CA", func() kafka.Security { sec := s.security("mh", "mh-secret"); sec.TLSCAFile = other.CAFile; return sec },
			"emitter", false, kafka.ErrUntrusted, "certificate not trusted"},
		{"plaintext to a TLS listener", func() kafka.Security {
			sec := s.security("mh", "mh-secret")
			sec.TLSEnabled, sec.TLSCAFile = false, ""
			return sec
		},
			"emitter", false, nil, "kafka: "},
		{"no ACLs", func() kafka.Security { return s.security("mh", "mh-secret") }, "emitter", false, kafka.ErrNotAuthorized, "not authorized for Read, Describe on topic heap.events"},
		{"emitter's ACLs", func() kafka.Security { return s.security("mh", "mh-secret") }, "emitter", true, nil, ""},
		{"emitter's ACLs are not the mapper's", func() kafka.Security { return s.security("mh", "mh-secret") }, "mapper", true, kafka.ErrNotAuthorized, "not authorized for Read, Describe on topic mailchimp.raw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.grant {
				grantEmitter(t)
			}
			err := preflight(t, s.brokers, tc.sec(), tc.role, topics)
			if tc.line == "" {
				if err != nil {
					t.Fatalf("preflight: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("preflight passed")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.line) {
				t.Errorf("error %q does not say %q", err, tc.line)
			}
			if strings.Contains(err.Error(), "mh-secret") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error %q carries the password", err)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

func TestPreflightMissingTopic(t *testing.T) {
	s := newSecured(t)
	topics := kafka.NewTopics("")
	ctx := context.Background()
	if _, err := s.admin.CreateTopics(ctx, 3, 1, nil, topics.Events); err != nil {
		t.Fatal(err)
	}
	needs, _ := kafka.Needs("emitter", topics, "", "")
	if err := kafka.Grant(ctx, s.admin, "User:mh", needs); err != nil {
		t.Fatal(err)
	}
	err := preflight(t, s.brokers, s.security("mh", "mh-secret"), "emitter", topics)
	if !errors.Is(err, kafka.ErrTopicMissing) || !strings.Contains(err.Error(), "heap.events.dlq (create it with `ctl topics apply`)") {
		t.Fatalf("preflight: %v", err)
	}
}

func TestMTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(ca.ServerConfig(ca.Issue(t, "broker", "127.0.0.1"), true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	client := ca.Issue(t, "mh-mtls")
	sec := kafka.Security{ClientID: "x", TLSEnabled: true, TLSCAFile: ca.CAFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}
	if err := preflight(t, c.ListenAddrs(), sec, "topics", kafka.NewTopics("")); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	sec.TLSCertFile, sec.TLSKeyFile = "", ""
	err = preflight(t, c.ListenAddrs(), sec, "topics", kafka.NewTopics(""))
	if !errors.Is(err, kafka.ErrCertRefused) {
		t.Fatalf("without a client certificate: %v", err)
	}
	t.Log(err)
}

func TestOAuthBearerReadsTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	now := time.Unix(1_800_000_000, 0)
	jwt := func(exp int64) string {
		return "eyJhbGciOiJub25lIn0." + b64(`{"sub":"mh","exp":`+itoa(exp)+`}`) + ".sig"
	}
	tests := []struct {
		name, content string
		want          error
	}{
		{"opaque", "opaque-token\n", nil},
		{"jwt valid", jwt(now.Unix() + 60), nil},
		{"jwt expired", jwt(now.Unix() - 1), kafka.ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(file, []byte(tc.content), 0o600)
			tok, err := kafka.ReadToken(file, now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadToken: %v, want %v", err, tc.want)
			}
			if err == nil && tok != strings.TrimSpace(tc.content) {
				t.Fatalf("token %q", tok)
			}
		})
	}
}

func TestInsecureSkipVerifyWarnsAtStart(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	_, err := kafka.NewConn([]string{"b:9092"}, kafka.Security{ClientID: "x", TLSEnabled: true, TLSInsecureSkipVerify: true}, "", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("KAFKA_TLS_INSECURE_SKIP_VERIFY").Len() != 1 {
		t.Fatalf("no warning: %v", logs.All())
	}
}

func TestSecurityValidate(t *testing.T) {
	tests := []struct {
		name string
		sec  kafka.Security
		want string
	}{
		{"plaintext", kafka.Security{ClientID: "x"}, ""},
		{"scram", kafka.Security{ClientID: "x", SASLMechanism: "SCRAM-SHA-512", SASLUsername: "u", SASLPassword: "p"}, ""},
		{"scram without password", kafka.Security{ClientID: "x", SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"},
		{"unknown mechanism", kafka.Security{ClientID: "x", SASLMechanism: "GSSAPI"}, `KAFKA_SASL_MECHANISM="GSSAPI"`},
		{"CA without TLS", kafka.Security{ClientID: "x", TLSCAFile: "/ca.pem"}, "KAFKA_TLS_CA_FILE is set but KAFKA_TLS_ENABLED is not true"},
		{"cert without key", kafka.Security{ClientID: "x", TLSEnabled: true, TLSCertFile: "/c.pem"}, "go together"},
		{"oauth without file", kafka.Security{ClientID: "x", SASLMechanism: "OAUTHBEARER"}, "KAFKA_SASL_OAUTH_TOKEN_FILE"},
		{"msk iam without TLS", kafka.Security{ClientID: "x", SASLMechanism: "AWS_MSK_IAM"}, "needs KAFKA_TLS_ENABLED"},
		{"msk iam", kafka.Security{ClientID: "x", TLSEnabled: true, SASLMechanism: "AWS_MSK_IAM"}, ""},
		{"password without mechanism", kafka.Security{ClientID: "x", SASLPassword: "p"}, "without KAFKA_SASL_MECHANISM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sec.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestClientIDPerRoleAndInstance(t *testing.T) {
	conn, err := kafka.NewConn([]string{"b:9092"}, kafka.Security{ClientID: "acme-mh"}, "mapper-7d9f-0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ClientID("mapper"); got != "acme-mh-mapper-mapper-7d9f-0" {
		t.Fatalf("ClientID = %q", got)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	sec := kafka.Security{SASLPassword: "hunter2"}
	for _, s := range []string{sprintf("%v", sec), sprintf("%+v", sec), sprintf("%#v", sec), sprintf("%s", sec.SASLPassword)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("printed the password: %s", s)
		}
	}
}
