package check

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// root is the repository, where docker-compose.yml and deploy/ live.
const root = "../.."

// loadCompose loads docker-compose.yml the way docker compose does
// (schema validation, interpolation, merge keys, consistency checks).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadComposeFiles(nil, "docker-compose.yml")
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// loadComposeFiles loads compose files (paths from the repository root)
// merged in order, as `docker compose -f a -f b` does: relative paths
// resolve from the repository root (the first file's directory), and env
// (NAME=value) is the only environment interpolation sees, so the host's
// variables cannot change the outcome.
func loadComposeFiles(env []string, files ...string) (*types.Project, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(abs, f))
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithWorkingDirectory(abs), cli.WithEnv(env),
		cli.WithConsistency(true), cli.WithInterpolation(true))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func TestComposeServicesAndStartOrder(t *testing.T) {
	p := loadCompose(t)
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"emitter", "ingress", "kafka", "mapper", "redis", "topics"}
	if !slices.Equal(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}

	kafka := p.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:4.") {
		t.Errorf("kafka image %q, want the official apache/kafka 4.x", kafka.Image)
	}
	if roles := kafka.Environment["KAFKA_PROCESS_ROLES"]; roles == nil || *roles != "broker,controller" {
		t.Errorf("kafka is not one KRaft node (KAFKA_PROCESS_ROLES=%v)", deref(roles))
	}
	if v := kafka.Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]; v == nil || *v != "false" {
		t.Errorf("kafka auto-creates topics: the layout would be bypassed")
	}

	// Every long-running service has a health check; start order waits on them.
	for _, n := range []string{"kafka", "redis", "ingress", "mapper", "emitter"} {
		hc := p.Services[n].HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s has no health check", n)
		}
	}
	if deps := p.Services["topics"].DependsOn; deps["kafka"].Condition != types.ServiceConditionHealthy {
		t.Errorf("topics does not wait for a healthy kafka: %v", deps)
	}
	for _, n := range []string{"ingress", "mapper", "emitter"} {
		deps := p.Services[n].DependsOn
		for dep, cond := range map[string]string{
			"kafka":  types.ServiceConditionHealthy,
			"redis":  types.ServiceConditionHealthy,
			"topics": types.ServiceConditionCompletedSuccessfully,
		} {
			if deps[dep].Condition != cond {
				t.Errorf("%s depends on %s with %q, want %q", n, dep, deps[dep].Condition, cond)
			}
		}
	}
}

func TestComposeServicesBuiltFromRepoAsNonRoot(t *testing.T) {
	p := loadCompose(t)
	for n, svc := range map[string]string{"topics": "ctl", "ingress": "ingress", "mapper": "mapper", "emitter": "emitter"} {
		s := p.Services[n]
		if s.Build == nil || filepath.Base(s.Build.Dockerfile) != "Dockerfile" || !strings.HasSuffix(filepath.Dir(s.Build.Dockerfile), "deploy") {
			t.Errorf("%s is not built from deploy/Dockerfile: %+v", n, s.Build)
			continue
		}
		if arg := s.Build.Args["SERVICE"]; arg == nil || *arg != svc {
			t.Errorf("%s builds SERVICE=%v, want %s", n, deref(arg), svc)
		}
		if s.User == "" || strings.HasPrefix(s.User, "0") || s.User == "root" {
			t.Errorf("%s runs as %q, want the non-root uid", n, s.User)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: read_only %v, cap_drop %v", n, s.ReadOnly, s.CapDrop)
		}
	}
	for _, n := range []string{"ingress", "mapper", "emitter"} {
		s := p.Services[n]
		for _, k := range []string{"KAFKA_BROKERS", "REDIS_URL", "SOURCES_FILE"} {
			if s.Environment[k] == nil || *s.Environment[k] == "" {
				t.Errorf("%s lacks %s", n, k)
			}
		}
		// The health check asks /readyz on the port the service serves it on.
		port := "9090"
		if n == "ingress" {
			port = "8080"
		}
		if hc := strings.Join(p.Services[n].HealthCheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+port+"/readyz") {
			t.Errorf("%s health check %q does not ask /readyz on %s", n, hc, port)
		}
	}
	// The topic setup applies the shipped layout with single-broker settings.
	cmd := strings.Join(p.Services["topics"].Command, " ")
	for _, want := range []string{"topics apply", "/etc/mailchimp-heap/topics.yaml", "-replication 1", "min.insync.replicas=1"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("topics command %q lacks %q", cmd, want)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<unset>"
	}
	return *s
}
