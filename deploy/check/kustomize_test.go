package check

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// obj is one rendered Kubernetes object.
type obj map[string]any

// get walks maps by key and lists by decimal index.
func (o obj) get(path ...string) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (o obj) str(path ...string) string { s, _ := o.get(path...).(string); return s }
func (o obj) list(path ...string) []any { l, _ := o.get(path...).([]any); return l }
func (o obj) num(path ...string) int64 {
	switch n := o.get(path...).(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}
func (o obj) kind() string { return o.str("kind") }
func (o obj) name() string { return o.str("metadata", "name") }

// render builds a kustomization with kustomize's own library (what
// `kustomize build` and `kubectl apply -k` run), once per directory for
// the test binary: the tests only read the objects.
func render(t *testing.T, dir string) []obj {
	t.Helper()
	r, _ := renders.LoadOrStore(dir, sync.OnceValues(func() ([]obj, error) { return build(dir) }))
	objs, err := r.(func() ([]obj, error))()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

var renders sync.Map // dir -> func() ([]obj, error)

func build(dir string) ([]obj, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []obj
	for _, r := range m.Resources() {
		mp, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		out = append(out, obj(mp))
	}
	return out, nil
}

func find(objs []obj, kind, name string) obj {
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	return nil
}

// findGenerated finds a generated ConfigMap or Secret by its name before the hash.
func findGenerated(objs []obj, kind, name string) obj {
	for _, o := range objs {
		if o.kind() == kind && (o.name() == name || strings.HasPrefix(o.name(), name+"-")) {
			return o
		}
	}
	return nil
}

// adminPort serves every service's /metrics, /healthz and /readyz
// (ADMIN_ADDR): the probes' and Prometheus' port.
const adminPort = "admin"

var workloads = map[string]struct {
	kind  string
	ports map[string]int64 // container port name -> number
}{
	// http: the public listener (INGRESS_ADDR) the Ingress exposes.
	"ingress": {"Deployment", map[string]int64{"http": 8080, adminPort: 9090}},
	"mapper":  {"StatefulSet", map[string]int64{adminPort: 9090}},
	"emitter": {"StatefulSet", map[string]int64{adminPort: 9090}},
}

// overlays are the shipped overlays: every promise below holds for each;
// secured_test.go adds what only the secured one promises.
var overlays = []string{"deploy/k8s/overlays/example", "deploy/k8s/overlays/secured"}

// forEachOverlay runs f on each overlay's rendering, as a subtest.
func forEachOverlay(t *testing.T, f func(t *testing.T, objs []obj)) {
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) { f(t, render(t, dir)) })
	}
}

func TestKustomizeBaseAndOverlayRender(t *testing.T) {
	for _, dir := range append([]string{"deploy/k8s/base"}, overlays...) {
		objs := render(t, dir)
		for name, w := range workloads {
			if find(objs, w.kind, name) == nil {
				t.Errorf("%s: no %s %s", dir, w.kind, name)
			}
		}
	}
}

func TestKustomizeWorkloads(t *testing.T) {
	forEachOverlay(t, testWorkloads)
}

func testWorkloads(t *testing.T, objs []obj) {
	for name, w := range workloads {
		t.Run(name, func(t *testing.T) {
			d := find(objs, w.kind, name)
			if d == nil {
				t.Fatalf("no %s %s", w.kind, name)
			}
			if ns := d.str("metadata", "namespace"); ns != "mailchimp-heap" {
				t.Errorf("namespace %q", ns)
			}
			pod := obj(d.get("spec", "template").(map[string]any))
			if pod.get("spec", "securityContext", "runAsNonRoot") != true {
				t.Error("pod does not require non-root")
			}
			if pod.num("spec", "securityContext", "runAsUser") == 0 {
				t.Error("pod runs as uid 0")
			}
			cs := pod.list("spec", "containers")
			if len(cs) != 1 {
				t.Fatalf("%d containers", len(cs))
			}
			c := obj(cs[0].(map[string]any))
			if img := c.str("image"); !strings.Contains(img, "mailchimp-heap/"+name+":") {
				t.Errorf("image %q", img)
			}
			if c.get("securityContext", "allowPrivilegeEscalation") != false || c.get("securityContext", "readOnlyRootFilesystem") != true {
				t.Errorf("container securityContext %v", c.get("securityContext"))
			}
			if c.get("resources", "requests", "cpu") == nil || c.get("resources", "requests", "memory") == nil {
				t.Errorf("no resource requests: %v", c.get("resources"))
			}
			if c.get("resources", "limits", "memory") == nil {
				t.Errorf("no memory limit: %v", c.get("resources"))
			}
			ports := map[string]int64{}
			for _, p := range c.list("ports") {
				p := obj(p.(map[string]any))
				ports[p.str("name")] = p.num("containerPort")
			}
			if !maps.Equal(ports, w.ports) {
				t.Errorf("ports %v, want %v", ports, w.ports)
			}
			if got, want := pod.str("metadata", "annotations", "prometheus.io/port"), strconv.FormatInt(w.ports[adminPort], 10); got != want {
				t.Errorf("prometheus.io/port %q, want the admin port %s", got, want)
			}
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
				if got := c.str(probe, "httpGet", "path"); got != path {
					t.Errorf("%s path %q, want %s", probe, got, path)
				}
				if got := c.str(probe, "httpGet", "port"); got != adminPort {
					t.Errorf("%s port %q, want %s", probe, got, adminPort)
				}
			}
			checkSecrets(t, objs, c, pod)
			if pdb := findPDBFor(objs, pod); pdb == nil {
				t.Error("no PodDisruptionBudget selects the pods")
			}
		})
	}
}

// checkSecrets: secrets reach the pods from Secret objects that exist
// (through a secretKeyRef, or as a file of a mounted Secret named by
// NAME_FILE), and the ConfigMap holds none of them.
func checkSecrets(t *testing.T, objs []obj, c, pod obj) {
	t.Helper()
	refs := map[string]obj{}
	for _, e := range c.list("env") {
		e := obj(e.(map[string]any))
		refs[e.str("name")] = e
	}
	for _, key := range []string{"REDIS_URL"} {
		if e, ok := refs[key]; ok && e.get("valueFrom", "secretKeyRef") != nil {
			ref := e.str("valueFrom", "secretKeyRef", "name")
			s := find(objs, "Secret", ref)
			if s == nil {
				t.Errorf("%s refers to Secret %s, which the overlay does not create", key, ref)
			} else if s.get("data", e.str("valueFrom", "secretKeyRef", "key")) == nil {
				t.Errorf("Secret %s has no key %s", ref, key)
			}
			continue
		}
		if e, ok := refs[key+"_FILE"]; ok && e.str("value") != "" {
			if _, _, err := secretFile(objs, pod, c, e.str("value")); err != nil {
				t.Errorf("%s_FILE: %v", key, err)
			}
			continue
		}
		t.Errorf("%s neither from a secretKeyRef nor %s_FILE naming a mounted Secret's file", key, key)
	}
	var sourcesSecret string
	for _, v := range pod.list("spec", "volumes") {
		v := obj(v.(map[string]any))
		if v.str("name") == "sources" {
			sourcesSecret = v.str("secret", "secretName")
		}
	}
	if s := find(objs, "Secret", sourcesSecret); s == nil || s.get("data", "sources.yaml") == nil {
		t.Errorf("SOURCES_FILE is not mounted from a Secret holding sources.yaml (volume secret %q)", sourcesSecret)
	}
	cm := findGenerated(objs, "ConfigMap", "mailchimp-heap-env")
	if cm == nil {
		t.Fatal("no mailchimp-heap-env ConfigMap")
	}
	for _, k := range []string{"REDIS_URL", "TOKEN_KEY", "MAILCHIMP_CLIENT_SECRET", "STATUS_TOKEN"} {
		if cm.get("data", k) != nil {
			t.Errorf("ConfigMap holds the secret %s", k)
		}
	}
}

func findPDBFor(objs []obj, pod obj) obj {
	labels, _ := pod.get("metadata", "labels").(map[string]any)
	for _, o := range objs {
		if o.kind() != "PodDisruptionBudget" {
			continue
		}
		sel, _ := o.get("spec", "selector", "matchLabels").(map[string]any)
		if len(sel) == 0 {
			continue
		}
		match := true
		for k, v := range sel {
			if labels[k] != v {
				match = false
			}
		}
		if match && (o.get("spec", "minAvailable") != nil || o.get("spec", "maxUnavailable") != nil) {
			return o
		}
	}
	return nil
}

func TestKustomizeIngressExposure(t *testing.T) {
	forEachOverlay(t, testIngressExposure)
}

func testIngressExposure(t *testing.T, objs []obj) {
	svc := find(objs, "Service", "ingress")
	if svc == nil || svc.str("spec", "selector", "app.kubernetes.io/component") != "ingress" {
		t.Fatalf("Service ingress missing or selects %v", svc.get("spec", "selector"))
	}
	ing := find(objs, "Ingress", "ingress")
	if ing == nil {
		t.Fatal("no Ingress")
	}
	var paths []string
	for _, p := range ing.list("spec", "rules", "0", "http", "paths") {
		p := obj(p.(map[string]any))
		if b := p.str("backend", "service", "name"); b != "ingress" {
			t.Errorf("path %s goes to %q", p.str("path"), b)
		}
		paths = append(paths, p.str("path"))
	}
	if !slices.Contains(paths, "/webhooks/") {
		t.Errorf("Ingress paths %v lack /webhooks/", paths)
	}
	for _, p := range paths {
		if p == "/" || strings.HasPrefix(p, "/metrics") || strings.HasPrefix(p, "/healthz") || strings.HasPrefix(p, "/readyz") {
			t.Errorf("Ingress exposes %s publicly", p)
		}
	}
}

// layoutPartitions reads deploy/topics.yaml just far enough to know each
// topic's partition count (pkg/topology validates the file itself).
func layoutPartitions(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy/topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Defaults struct {
			Partitions int `json:"partitions"`
		} `json:"defaults"`
		Topics []struct {
			Name       string `json:"name"`
			Partitions int    `json:"partitions"`
		} `json:"topics"`
	}
	if err := yaml.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tp := range l.Topics {
		out[tp.Name] = cmpOr(tp.Partitions, l.Defaults.Partitions)
	}
	return out
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func TestKustomizeLagAutoscaling(t *testing.T) {
	forEachOverlay(t, testLagAutoscaling)
}

func testLagAutoscaling(t *testing.T, objs []obj) {
	parts := layoutPartitions(t)
	env := findGenerated(objs, "ConfigMap", "mailchimp-heap-env")
	brokers := env.str("data", "KAFKA_BROKERS")
	// Group members per pod: a mapper runs MAPPER_SESSIONS of them.
	members := map[string]int64{"mapper": 1, "emitter": 1}
	if n, err := strconv.ParseInt(env.str("data", "MAPPER_SESSIONS"), 10, 64); err != nil || n < 1 {
		t.Errorf("ConfigMap MAPPER_SESSIONS %q: want a number of at least 1", env.str("data", "MAPPER_SESSIONS"))
	} else {
		members["mapper"] = n
	}
	type trigger struct{ group, topic string }
	want := map[string][]trigger{
		"mapper":  {{"mapper", "mailchimp.raw"}, {"materializer", ""}},
		"emitter": {{"emitter", "heap.events"}},
	}
	for target, triggers := range want {
		so := find(objs, "ScaledObject", target)
		if so == nil {
			t.Errorf("no KEDA ScaledObject for %s", target)
			continue
		}
		if k, n := so.str("spec", "scaleTargetRef", "kind"), so.str("spec", "scaleTargetRef", "name"); find(objs, k, n) == nil || n != target {
			t.Errorf("ScaledObject %s scales %s/%s", target, k, n)
		}
		// A StatefulSet that names replicas would fight the autoscaler on every apply.
		if find(objs, "StatefulSet", target).get("spec", "replicas") != nil {
			t.Errorf("StatefulSet %s sets replicas; KEDA owns them", target)
		}
		max := so.num("spec", "maxReplicaCount")
		var got []trigger
		for _, tr := range so.list("spec", "triggers") {
			tr := obj(tr.(map[string]any))
			if tr.str("type") != "kafka" {
				t.Errorf("%s: trigger type %q", target, tr.str("type"))
				continue
			}
			got = append(got, trigger{tr.str("metadata", "consumerGroup"), tr.str("metadata", "topic")})
			if b := tr.str("metadata", "bootstrapServers"); b != brokers {
				t.Errorf("%s: trigger brokers %q, ConfigMap KAFKA_BROKERS %q", target, b, brokers)
			}
			if tr.str("metadata", "lagThreshold") == "" {
				t.Errorf("%s: trigger without lagThreshold", target)
			}
			if tp := tr.str("metadata", "topic"); tp != "" {
				if p, ok := parts[tp]; !ok {
					t.Errorf("%s: trigger topic %s is not in deploy/topics.yaml", target, tp)
				} else if max < 1 || max*members[target] > int64(p) {
					t.Errorf("%s: maxReplicaCount %v of %d members each exceeds %s's %d partitions", target, max, members[target], tp, p)
				}
			}
		}
		if !slices.Equal(got, triggers) {
			t.Errorf("%s triggers %v, want %v", target, got, triggers)
		}
	}
}

func TestKustomizeTopicJob(t *testing.T) {
	forEachOverlay(t, testTopicJob)
}

func testTopicJob(t *testing.T, objs []obj) {
	job := find(objs, "Job", "mailchimp-heap-topics")
	if job == nil {
		t.Fatal("no topic layout Job")
	}
	c := obj(job.list("spec", "template", "spec", "containers")[0].(map[string]any))
	var args []string
	for _, a := range c.list("args") {
		args = append(args, a.(string))
	}
	if got := strings.Join(args, " "); !strings.HasPrefix(got, "topics apply -file /etc/mailchimp-heap/topics.yaml") {
		t.Errorf("job args %q", got)
	}
	if img := c.str("image"); !strings.Contains(img, "mailchimp-heap/ctl:") {
		t.Errorf("job image %q", img)
	}
	if job.get("spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("job pod does not require non-root")
	}
}
