package service_test

// Start-up and readiness against a secured Apache Kafka: a SASL_SSL
// listener (SCRAM-SHA-512, a CA made by .ci/kafka.sh) and an mTLS listener,
// with the StandardAuthorizer. They run when .ci/run exports the listeners
// (KAFKA_SASL_BROKERS, KAFKA_MTLS_BROKERS and the KAFKA_TEST_* files and
// users) and are skipped otherwise; CI checks that they ran.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

type securedBroker struct {
	sasl, mtls                 []string
	ca, otherCA                string
	clientCert, clientKey      string
	user, pass, admin, adminPW string
	mtlsPrincipal              string
}

func secured(t *testing.T) securedBroker {
	t.Helper()
	b := securedBroker{
		ca: os.Getenv("KAFKA_TEST_CA_FILE"), otherCA: os.Getenv("KAFKA_TEST_OTHER_CA_FILE"),
		clientCert: os.Getenv("KAFKA_TEST_CLIENT_CERT_FILE"), clientKey: os.Getenv("KAFKA_TEST_CLIENT_KEY_FILE"),
		user: os.Getenv("KAFKA_TEST_USERNAME"), pass: os.Getenv("KAFKA_TEST_PASSWORD"),
		admin: os.Getenv("KAFKA_TEST_ADMIN_USERNAME"), adminPW: os.Getenv("KAFKA_TEST_ADMIN_PASSWORD"),
		mtlsPrincipal: os.Getenv("KAFKA_TEST_MTLS_PRINCIPAL"),
	}
	sasl, mtls := os.Getenv("KAFKA_SASL_BROKERS"), os.Getenv("KAFKA_MTLS_BROKERS")
	if sasl == "" || mtls == "" || b.ca == "" || b.admin == "" {
		t.Skip("no secured Apache Kafka: .ci/run exports KAFKA_SASL_BROKERS, KAFKA_MTLS_BROKERS and KAFKA_TEST_*")
	}
	b.sasl, b.mtls = strings.Split(sasl, ","), strings.Split(mtls, ",")
	return b
}

func (b securedBroker) scram(user, pass, ca string) kafka.Security {
	return kafka.Security{ClientID: "mailchimp-heap", TLSEnabled: true, TLSCAFile: ca,
		SASLMechanism: kafka.MechScram512, SASLUsername: user, SASLPassword: kafka.Secret(pass)}
}

// adminClient is the super user's client, for topics and ACLs.
func (b securedBroker) adminClient(t *testing.T) *kadm.Client {
	t.Helper()
	conn, err := kafka.NewConn(b.sasl, b.scram(b.admin, b.adminPW, b.ca), "", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(conn.Opts("test")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// topics lays out the pipeline's topics under a fresh prefix, and grants
// principal role's ACLs when grant is set.
func (b securedBroker) topics(t *testing.T, adm *kadm.Client, principal, role string, grant bool) string {
	t.Helper()
	prefix := kafkatest.Prefix(t)
	topics := kafka.NewTopics(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, topics.All()...); err != nil {
		t.Fatal(err)
	}
	if grant {
		needs, err := kafka.Needs(role, topics, prefix, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := kafka.Grant(ctx, adm, principal, needs); err != nil {
			t.Fatal(err)
		}
	}
	return prefix
}

func openEmitter(t *testing.T, brokers []string, sec kafka.Security, prefix string) (*service.Deps, error) {
	t.Helper()
	env, err := config.LoadEnv(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	env.Kafka, env.TopicPrefix, env.RedisURL, env.InstanceID = sec, prefix, redistest.URL(t), "pod-0"
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	sources, err := source.New(source.Source{ID: "acme", HeapAppID: prefix + "app"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := service.Open(ctx, env, sources, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), brokers, "emitter")
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("start-up took %s, over the 30 s it is allowed", took)
	}
	if d != nil {
		t.Cleanup(d.Close)
	}
	return d, err
}

// TestSecuredStartup: a wrong password, an untrusted CA, a missing ACL and
// a missing client certificate each stop start-up within 30 s with one line
// naming the cause; the right settings start.
func TestSecuredStartup(t *testing.T) {
	b := secured(t)
	adm := b.adminClient(t)
	granted := b.topics(t, adm, "User:"+b.user, "emitter", true)
	bare := b.topics(t, adm, "User:"+b.user, "emitter", false)
	mtlsPrefix := b.topics(t, adm, b.mtlsPrincipal, "emitter", true)
	mtls := kafka.Security{ClientID: "mailchimp-heap", TLSEnabled: true, TLSCAFile: b.ca, TLSCertFile: b.clientCert, TLSKeyFile: b.clientKey}
	noCert := mtls
	noCert.TLSCertFile, noCert.TLSKeyFile = "", ""
	tests := []struct {
		name    string
		brokers []string
		sec     kafka.Security
		prefix  string
		want    error
		line    string
	}{
		{"SCRAM-SHA-512 with the emitter's ACLs", b.sasl, b.scram(b.user, b.pass, b.ca), granted, nil, ""},
		{"wrong password", b.sasl, b.scram(b.user, "not-the-password", b.ca), granted, kafka.ErrAuthentication, "kafka: authentication failed"},
		{"untrusted CA", b.sasl, b.scram(b.user, b.pass, b.otherCA), granted, kafka.ErrUntrusted, "kafka: certificate not trusted"},
		{"missing ACLs", b.sasl, b.scram(b.user, b.pass, b.ca), bare, kafka.ErrNotAuthorized, "kafka: not authorized for Read, Describe on topic " + bare + "heap.events"},
		{"mTLS with the emitter's ACLs", b.mtls, mtls, mtlsPrefix, nil, ""},
		{"mTLS without a client certificate", b.mtls, noCert, mtlsPrefix, nil, "kafka: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openEmitter(t, tc.brokers, tc.sec, tc.prefix)
			if tc.line == "" {
				if err != nil {
					t.Fatalf("start-up: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("start-up succeeded")
			}
			t.Logf("start-up refused: %v", err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%q is not %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.line) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q is not one line starting %q", err, tc.line)
			}
			if strings.Contains(err.Error(), b.pass) || strings.Contains(err.Error(), "not-the-password") {
				t.Errorf("%q carries a password", err)
			}
		})
	}
}

// TestSecuredReadiness: an emitter that started with its ACLs answers
// /readyz 200; once its group ACL is removed, /readyz answers 503 naming
// the missing permission, within 30 s.
func TestSecuredReadiness(t *testing.T) {
	b := secured(t)
	adm := b.adminClient(t)
	prefix := b.topics(t, adm, "User:"+b.user, "emitter", true)
	d, err := openEmitter(t, b.sasl, b.scram(b.user, b.pass, b.ca), prefix)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(service.Admin(d))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d %s", code, body)
	}
	ctx := context.Background()
	del := kadm.NewACLs().Allow("User:" + b.user).AllowHosts().Groups(prefix + "emitter").
		Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := adm.DeleteACLs(ctx, del); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, srv.URL+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "not authorized for Read on group "+prefix+"emitter") {
			t.Logf("/readyz %d %s", code, body)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s 30 s after the ACL was removed", code, body)
		}
		time.Sleep(time.Second)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
