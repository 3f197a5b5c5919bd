package check

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// The override docs/CONNECTING.md describes:
// docker compose -f docker-compose.yml -f deploy/compose.secured.yml up
var securedCompose = []string{"docker-compose.yml", "deploy/compose.secured.yml"}

const securedBrokers = "b-1.example.com:9096,b-2.example.com:9096"

func loadSecuredCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadComposeFiles([]string{"KAFKA_BROKERS=" + securedBrokers}, securedCompose...)
	if err != nil {
		t.Fatalf("docker-compose.yml + deploy/compose.secured.yml do not load: %v", err)
	}
	return p
}

// Without the operator's KAFKA_BROKERS the override refuses to load, naming
// the variable, rather than pointing the services at a broker that is not there.
func TestComposeSecuredNeedsBrokers(t *testing.T) {
	_, err := loadComposeFiles(nil, securedCompose...)
	if err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Fatalf("loading without KAFKA_BROKERS: err %v, want one naming KAFKA_BROKERS", err)
	}
}

func TestComposeSecuredServices(t *testing.T) {
	p := loadSecuredCompose(t)

	// The bundled plaintext Kafka and Redis are not started: the services
	// use the operator's cluster.
	for _, n := range []string{"kafka", "redis"} {
		if _, on := p.Services[n]; on {
			t.Errorf("%s is started; the override points at an external cluster", n)
		}
		if _, off := p.DisabledServices[n]; !off {
			t.Errorf("%s is neither started nor disabled by a profile", n)
		}
	}
	if deps := p.Services["topics"].DependsOn; len(deps) != 0 {
		t.Errorf("topics depends on %v; nothing it needs runs here", deps)
	}
	if cmd := strings.Join(p.Services["topics"].Command, " "); !strings.HasPrefix(cmd, "topics apply -file /etc/mailchimp-heap/topics.yaml") ||
		strings.Contains(cmd, "-replication") || strings.Contains(cmd, "min.insync.replicas") {
		t.Errorf("topics command %q: want the layout's own replication, not the single-broker overrides", cmd)
	}

	var topicsUser string
	for _, n := range []string{"topics", "ingress", "mapper", "emitter"} {
		s, ok := p.Services[n]
		if !ok {
			t.Errorf("no service %s", n)
			continue
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		if got := env("KAFKA_BROKERS"); got != securedBrokers {
			t.Errorf("%s: KAFKA_BROKERS %q, want the operator's %q", n, got, securedBrokers)
		}
		if env("KAFKA_TLS_ENABLED") != "true" {
			t.Errorf("%s: KAFKA_TLS_ENABLED %q", n, env("KAFKA_TLS_ENABLED"))
		}
		if m := env("KAFKA_SASL_MECHANISM"); !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, m) {
			t.Errorf("%s: KAFKA_SASL_MECHANISM %q, want a user/password mechanism", n, m)
		}
		files := []string{"KAFKA_TLS_CA_FILE", "KAFKA_SASL_USERNAME_FILE", "KAFKA_SASL_PASSWORD_FILE"}
		plain := []string{"KAFKA_SASL_PASSWORD"}
		if n != "topics" {
			files = append(files, "REDIS_URL_FILE", "REDIS_TLS_CA_FILE")
			plain = append(plain, "REDIS_URL")
			if deps := s.DependsOn; len(deps) != 1 || deps["topics"].Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s depends on %v, want only topics completed successfully", n, deps)
			}
		}
		for _, k := range plain {
			if _, set := s.Environment[k]; set {
				t.Errorf("%s sets %s in its environment; it holds a password: use %s_FILE", n, k, k)
			}
		}
		for _, k := range files {
			checkComposeSecretFile(t, p, s, k, env(k))
		}
		// Least privilege: the topic setup's user (CREATE, ALTER) is not
		// the services'.
		user := composeSecretSource(s, env("KAFKA_SASL_USERNAME_FILE"))
		if n == "topics" {
			topicsUser = user
		} else if user == topicsUser || user == "" {
			t.Errorf("%s: Kafka user from secret %q, want one that is not the topic setup's (%q)", n, user, topicsUser)
		}
		// No credential reaches the environment by value.
		for k, v := range s.Environment {
			for _, secret := range composeSecretValues(t, p) {
				if v != nil && strings.Contains(*v, secret) {
					t.Errorf("%s: %s holds the value of a secret file", n, k)
				}
			}
		}
	}
}

// checkComposeSecretFile: the setting names a file under /run/secrets that a
// compose secret of the service provides, from a file that exists.
func checkComposeSecretFile(t *testing.T, p *types.Project, s types.ServiceConfig, setting, file string) {
	t.Helper()
	if file == "" {
		t.Errorf("%s: %s is not set", s.Name, setting)
		return
	}
	source := composeSecretSource(s, file)
	if source == "" {
		t.Errorf("%s: %s=%s, but no secret of the service is mounted there", s.Name, setting, file)
		return
	}
	sec, ok := p.Secrets[source]
	if !ok || sec.File == "" {
		t.Errorf("%s: %s=%s comes from secret %q, which names no file", s.Name, setting, file, source)
		return
	}
	if _, err := os.Stat(sec.File); err != nil {
		t.Errorf("%s: %s: secret %q: %v", s.Name, setting, source, err)
	}
}

// composeSecretSource is the secret a service mounts at file.
func composeSecretSource(s types.ServiceConfig, file string) string {
	for _, ref := range s.Secrets {
		target := ref.Target
		if target == "" {
			target = ref.Source
		}
		if !path.IsAbs(target) {
			target = path.Join("/run/secrets", target)
		}
		if target == file {
			return ref.Source
		}
	}
	return ""
}

// composeSecretValues are the contents of the files behind the project's
// secrets (the placeholders, by default).
func composeSecretValues(t *testing.T, p *types.Project) []string {
	t.Helper()
	var out []string
	for name, sec := range p.Secrets {
		b, err := os.ReadFile(sec.File)
		if err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
		if v := strings.TrimSpace(string(b)); len(v) >= 8 {
			out = append(out, v)
		}
	}
	return out
}

// deploy/secrets.example holds placeholders only, each saying so (the
// usernames are example names).
func TestComposeSecuredExampleSecretsArePlaceholders(t *testing.T) {
	p := loadSecuredCompose(t)
	if len(p.Secrets) == 0 {
		t.Fatal("the override defines no secrets")
	}
	for name, sec := range p.Secrets {
		if !strings.Contains(sec.File, "deploy/secrets.example/") {
			t.Errorf("secret %s reads %s, want deploy/secrets.example/ by default", name, sec.File)
		}
	}
	entries, err := os.ReadDir(root + "/deploy/secrets.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(root + "/deploy/secrets.example/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), "-username") {
			if !strings.HasPrefix(string(b), "mailchimp-heap-") {
				t.Errorf("deploy/secrets.example/%s: %q, want an example name mailchimp-heap-...", e.Name(), b)
			}
			continue
		}
		if !strings.Contains(strings.ToLower(string(b)), "placeholder") {
			t.Errorf("deploy/secrets.example/%s does not say it is a placeholder", e.Name())
		}
	}
}
