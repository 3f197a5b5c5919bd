package check

import (
	"encoding/base64"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// What deploy/k8s/overlays/secured promises on top of every overlay's
// promises (kustomize_test.go): Kafka over TLS with SASL and Redis over TLS
// for every process, credentials only as read-only files of Secrets, and
// KEDA's lag triggers authenticated with the same credentials.

const securedOverlay = "deploy/k8s/overlays/secured"

// envValue is one resolved environment variable of a container.
type envValue struct {
	value string
	// plain: the value is written in the manifest (env value or a
	// ConfigMap), not read from a Secret or the downward API.
	plain bool
	from  string
}

// containerEnv resolves a container's environment as the kubelet does:
// envFrom sources in order, then env, a later definition winning.
func containerEnv(t *testing.T, objs []obj, c obj) map[string]envValue {
	t.Helper()
	out := map[string]envValue{}
	for _, src := range c.list("envFrom") {
		src := obj(src.(map[string]any))
		switch {
		case src.get("configMapRef") != nil:
			name := src.str("configMapRef", "name")
			cm := find(objs, "ConfigMap", name)
			if cm == nil {
				t.Errorf("container %s: envFrom ConfigMap %s does not exist", c.str("name"), name)
				continue
			}
			data, _ := cm.get("data").(map[string]any)
			for k, v := range data {
				out[src.str("prefix")+k] = envValue{value: fmt.Sprint(v), plain: true, from: "ConfigMap " + name}
			}
		case src.get("secretRef") != nil:
			name := src.str("secretRef", "name")
			s := find(objs, "Secret", name)
			if s == nil {
				t.Errorf("container %s: envFrom Secret %s does not exist", c.str("name"), name)
				continue
			}
			data, _ := s.get("data").(map[string]any)
			for k := range data {
				out[src.str("prefix")+k] = envValue{from: "Secret " + name}
			}
		}
	}
	for _, e := range c.list("env") {
		e := obj(e.(map[string]any))
		if e.get("valueFrom") != nil {
			out[e.str("name")] = envValue{from: "valueFrom"}
			continue
		}
		out[e.str("name")] = envValue{value: e.str("value"), plain: true, from: "env"}
	}
	return out
}

// secretFile resolves a file path in container c of pod to the Secret and
// key mounted there; the mount must be read-only and the key present.
func secretFile(objs []obj, pod, c obj, file string) (obj, string, error) {
	for _, m := range c.list("volumeMounts") {
		m := obj(m.(map[string]any))
		mp := m.str("mountPath")
		var rel string
		switch {
		case m.str("subPath") != "" && file == mp:
			rel = m.str("subPath")
		case m.str("subPath") == "" && strings.HasPrefix(file, strings.TrimSuffix(mp, "/")+"/"):
			rel = strings.TrimPrefix(file, strings.TrimSuffix(mp, "/")+"/")
		default:
			continue
		}
		var vol obj
		for _, v := range pod.list("spec", "volumes") {
			if v := obj(v.(map[string]any)); v.str("name") == m.str("name") {
				vol = v
			}
		}
		if vol == nil || vol.get("secret") == nil {
			return nil, "", fmt.Errorf("%s is on volume %s, which is not a Secret", file, m.str("name"))
		}
		if m.get("readOnly") != true {
			return nil, "", fmt.Errorf("%s: volume %s is mounted at %s without readOnly", file, m.str("name"), mp)
		}
		key := rel
		if items := vol.list("secret", "items"); len(items) > 0 {
			key = ""
			for _, it := range items {
				if it := obj(it.(map[string]any)); it.str("path") == rel {
					key = it.str("key")
				}
			}
		}
		name := vol.str("secret", "secretName")
		s := find(objs, "Secret", name)
		if s == nil {
			return nil, "", fmt.Errorf("%s: Secret %s (volume %s) does not exist", file, name, m.str("name"))
		}
		if key == "" || path.Dir(key) != "." || s.get("data", key) == nil {
			return nil, "", fmt.Errorf("%s: Secret %s has no key %q", file, name, key)
		}
		return s, key, nil
	}
	return nil, "", fmt.Errorf("%s is on no volume mount of container %s", file, c.str("name"))
}

// secretData is a Secret's value under key, decoded.
func secretData(t *testing.T, s obj, key string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s.str("data", key)), ""))
	if err != nil {
		t.Fatalf("Secret %s key %s: %v", s.name(), key, err)
	}
	return string(b)
}

// podTemplates are the pod templates of every workload kind the overlays render.
func podTemplates(objs []obj) map[string]obj {
	out := map[string]obj{}
	for _, o := range objs {
		switch o.kind() {
		case "Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet":
			if tpl, ok := o.get("spec", "template").(map[string]any); ok {
				out[o.kind()+"/"+o.name()] = obj(tpl)
			}
		}
	}
	return out
}

func containersOf(pod obj) []obj {
	var out []obj
	for _, field := range []string{"initContainers", "containers"} {
		for _, c := range pod.list("spec", field) {
			out = append(out, obj(c.(map[string]any)))
		}
	}
	return out
}

// usesRedis: the three services talk to Redis; the topics Job (ctl topics)
// does not.
func usesRedis(workload string) bool { return !strings.HasPrefix(workload, "Job/") }

func TestSecuredOverlayEveryProcessConnectsSecurely(t *testing.T) {
	objs := render(t, securedOverlay)
	pods := podTemplates(objs)
	for _, want := range []string{"Deployment/ingress", "StatefulSet/mapper", "StatefulSet/emitter", "Job/mailchimp-heap-topics"} {
		if pods[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	for workload, pod := range pods {
		for _, c := range containersOf(pod) {
			t.Run(workload+"/"+c.str("name"), func(t *testing.T) {
				env := containerEnv(t, objs, c)
				// file resolves a NAME_FILE setting to its Secret file.
				file := func(name string) (obj, string) {
					t.Helper()
					v, ok := env[name]
					if !ok || v.value == "" {
						t.Errorf("%s is not set", name)
						return nil, ""
					}
					s, key, err := secretFile(objs, pod, c, v.value)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return nil, ""
					}
					return s, key
				}
				if v := env["KAFKA_TLS_ENABLED"]; v.value != "true" {
					t.Errorf("KAFKA_TLS_ENABLED %q, want true", v.value)
				}
				if v := env["KAFKA_TLS_INSECURE_SKIP_VERIFY"]; v.value != "" && v.value != "false" {
					t.Errorf("KAFKA_TLS_INSECURE_SKIP_VERIFY=%s: never in a shipped overlay", v.value)
				}
				file("KAFKA_TLS_CA_FILE")
				if m := env["KAFKA_SASL_MECHANISM"].value; !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, m) {
					t.Errorf("KAFKA_SASL_MECHANISM %q, want a user/password mechanism", m)
				}
				if _, ok := env["KAFKA_SASL_USERNAME"]; !ok {
					file("KAFKA_SASL_USERNAME_FILE")
				}
				if _, ok := env["KAFKA_SASL_PASSWORD"]; ok {
					t.Error("KAFKA_SASL_PASSWORD is set: the password goes through KAFKA_SASL_PASSWORD_FILE only")
				}
				file("KAFKA_SASL_PASSWORD_FILE")
				if !usesRedis(workload) {
					return
				}
				if _, ok := env["REDIS_URL"]; ok {
					t.Error("REDIS_URL is set: it holds the Redis password, so it goes through REDIS_URL_FILE only")
				}
				if s, key := file("REDIS_URL_FILE"); s != nil {
					if u := secretData(t, s, key); !strings.HasPrefix(u, "rediss://") {
						t.Errorf("REDIS_URL_FILE (Secret %s, %s) is not a rediss:// (TLS) URL", s.name(), key)
					}
				}
				file("REDIS_TLS_CA_FILE")
			})
		}
	}
}

// Every Secret a pod mounts is mounted read-only, and the credential
// volumes are readable by the pod's group only.
func TestSecuredOverlaySecretMountsReadOnly(t *testing.T) {
	objs := render(t, securedOverlay)
	for workload, pod := range podTemplates(objs) {
		secretVols := map[string]obj{}
		for _, v := range pod.list("spec", "volumes") {
			if v := obj(v.(map[string]any)); v.get("secret") != nil {
				secretVols[v.str("name")] = v
			}
		}
		for _, want := range []string{"kafka-credentials", "redis-credentials"} {
			if want == "redis-credentials" && !usesRedis(workload) {
				continue
			}
			v := secretVols[want]
			if v == nil {
				t.Errorf("%s: no Secret volume %s", workload, want)
				continue
			}
			if mode := v.num("secret", "defaultMode"); mode == 0 || mode&0o007 != 0 {
				t.Errorf("%s: volume %s defaultMode %#o, want no access for others (0440)", workload, want, mode)
			} else if mode&0o004 == 0 && pod.num("spec", "securityContext", "fsGroup") == 0 {
				t.Errorf("%s: volume %s is not world-readable and the pod sets no fsGroup: the service could not read it", workload, want)
			}
		}
		for _, c := range containersOf(pod) {
			mounted := map[string]bool{}
			for _, m := range c.list("volumeMounts") {
				m := obj(m.(map[string]any))
				if secretVols[m.str("name")] == nil {
					continue
				}
				mounted[m.str("name")] = true
				if m.get("readOnly") != true {
					t.Errorf("%s/%s: Secret volume %s mounted at %s without readOnly", workload, c.str("name"), m.str("name"), m.str("mountPath"))
				}
			}
			if !mounted["kafka-credentials"] {
				t.Errorf("%s/%s does not mount kafka-credentials", workload, c.str("name"))
			}
			if usesRedis(workload) && !mounted["redis-credentials"] {
				t.Errorf("%s/%s does not mount redis-credentials", workload, c.str("name"))
			}
		}
	}
}

// secretish names settings that hold a credential themselves (not a path to one).
var secretish = regexp.MustCompile(`(PASSWORD|SECRET|TOKEN|_KEY)$|^REDIS_URL$`)

// No overlay writes a credential where it is not a Secret: no Secret's value
// appears in a plain env value or in a ConfigMap, and no setting named
// like a credential has a plain value.
func TestKustomizeNoSecretInPlainEnv(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []obj) {
		var secrets []string
		for _, o := range objs {
			if o.kind() != "Secret" {
				continue
			}
			data, _ := o.get("data").(map[string]any)
			for k := range data {
				if v := strings.TrimSpace(secretData(t, o, k)); len(v) >= 8 {
					secrets = append(secrets, v)
				}
			}
		}
		leaks := func(where, v string) {
			for _, s := range secrets {
				if strings.Contains(v, s) {
					t.Errorf("%s holds the value of a Secret", where)
				}
			}
		}
		for _, o := range objs {
			if o.kind() == "ConfigMap" {
				data, _ := o.get("data").(map[string]any)
				for k, v := range data {
					leaks(fmt.Sprintf("ConfigMap %s key %s", o.name(), k), fmt.Sprint(v))
				}
			}
		}
		for workload, pod := range podTemplates(objs) {
			for _, c := range containersOf(pod) {
				for name, v := range containerEnv(t, objs, c) {
					if !v.plain {
						continue
					}
					where := fmt.Sprintf("%s/%s env %s (%s)", workload, c.str("name"), name, v.from)
					leaks(where, v.value)
					if secretish.MatchString(name) && v.value != "" {
						t.Errorf("%s: a credential with a plain value; read it from a Secret (NAME_FILE or secretKeyRef)", where)
					}
				}
			}
		}
	})
}

// kedaSASL is KEDA's Kafka scaler spelling of each KAFKA_SASL_MECHANISM.
var kedaSASL = map[string]string{
	"PLAIN":         "plaintext",
	"SCRAM-SHA-256": "scram_sha256",
	"SCRAM-SHA-512": "scram_sha512",
	"OAUTHBEARER":   "oauthbearer",
	"AWS_MSK_IAM":   "oauthbearer", // with saslTokenProvider aws_msk_iam
}

// Each lag trigger authenticates like the pods it scales: an
// authenticationRef to a TriggerAuthentication that exists, whose
// secretTargetRefs name keys of Secrets that exist, with the same
// mechanism, TLS, CA and credentials as the target's containers.
func TestSecuredOverlayKEDAAuthentication(t *testing.T) {
	objs := render(t, securedOverlay)
	var sos int
	for _, so := range objs {
		if so.kind() != "ScaledObject" {
			continue
		}
		sos++
		target := find(objs, so.str("spec", "scaleTargetRef", "kind"), so.str("spec", "scaleTargetRef", "name"))
		if target == nil {
			t.Errorf("ScaledObject %s: no target", so.name())
			continue
		}
		pod := obj(target.get("spec", "template").(map[string]any))
		c := containersOf(pod)[len(containersOf(pod))-1]
		env := containerEnv(t, objs, c)
		// The Secret and key behind each of the target's credential files.
		type ref struct{ secret, key string }
		fileRef := func(name string) ref {
			s, key, err := secretFile(objs, pod, c, env[name].value)
			if err != nil {
				return ref{}
			}
			return ref{s.name(), key}
		}
		podCreds := map[string]ref{
			"ca":       fileRef("KAFKA_TLS_CA_FILE"),
			"username": fileRef("KAFKA_SASL_USERNAME_FILE"),
			"password": fileRef("KAFKA_SASL_PASSWORD_FILE"),
		}
		for i, tr := range so.list("spec", "triggers") {
			tr := obj(tr.(map[string]any))
			where := fmt.Sprintf("ScaledObject %s trigger %d (%s)", so.name(), i, tr.str("metadata", "consumerGroup"))
			if tr.str("type") != "kafka" {
				continue
			}
			authKind := tr.str("authenticationRef", "kind")
			if authKind == "" {
				authKind = "TriggerAuthentication"
			}
			authName := tr.str("authenticationRef", "name")
			if authName == "" {
				t.Errorf("%s has no authenticationRef", where)
				continue
			}
			ta := find(objs, authKind, authName)
			if ta == nil {
				t.Errorf("%s: authenticationRef %s %s does not exist", where, authKind, authName)
				continue
			}
			if authKind == "TriggerAuthentication" && ta.str("metadata", "namespace") != so.str("metadata", "namespace") {
				t.Errorf("%s: TriggerAuthentication %s is in namespace %q, the ScaledObject in %q", where, authName,
					ta.str("metadata", "namespace"), so.str("metadata", "namespace"))
			}
			params := map[string]ref{}
			for _, r := range ta.list("spec", "secretTargetRef") {
				r := obj(r.(map[string]any))
				s := find(objs, "Secret", r.str("name"))
				switch {
				case s == nil:
					t.Errorf("%s: %s parameter %s: Secret %q does not exist (a generated name kustomize did not follow?)",
						where, authName, r.str("parameter"), r.str("name"))
				case s.get("data", r.str("key")) == nil:
					t.Errorf("%s: %s parameter %s: Secret %s has no key %q", where, authName, r.str("parameter"), s.name(), r.str("key"))
				default:
					params[r.str("parameter")] = ref{s.name(), r.str("key")}
					if v := secretData(t, s, r.str("key")); r.str("parameter") != "ca" && strings.TrimSpace(v) != v {
						t.Errorf("%s: Secret %s key %s ends in whitespace; KEDA would send it as part of the %s",
							where, s.name(), r.str("key"), r.str("parameter"))
					}
				}
			}
			// sasl and tls: in the trigger's metadata or the TriggerAuthentication.
			setting := func(p string) string {
				if v := tr.str("metadata", p); v != "" {
					return v
				}
				if r, ok := params[p]; ok {
					return strings.TrimSpace(secretData(t, find(objs, "Secret", r.secret), r.key))
				}
				return ""
			}
			if want := kedaSASL[env["KAFKA_SASL_MECHANISM"].value]; setting("sasl") != want {
				t.Errorf("%s: sasl %q, but its pods use KAFKA_SASL_MECHANISM=%s (KEDA: %q)", where, setting("sasl"), env["KAFKA_SASL_MECHANISM"].value, want)
			}
			if env["KAFKA_TLS_ENABLED"].value == "true" && setting("tls") != "enable" {
				t.Errorf("%s: tls %q, but its pods use TLS (KEDA: enable)", where, setting("tls"))
			}
			for p, want := range podCreds {
				if want == (ref{}) {
					continue // the pods do not read this one from a file
				}
				if got, ok := params[p]; !ok {
					t.Errorf("%s: %s does not set %s", where, authName, p)
				} else if got != want {
					t.Errorf("%s: %s takes %s from Secret %s key %s; the pods read it from Secret %s key %s",
						where, authName, p, got.secret, got.key, want.secret, want.key)
				}
			}
		}
	}
	if sos == 0 {
		t.Fatal("no ScaledObjects")
	}
}

// The base and the example overlay stay what an unsecured cluster needs:
// no TLS or SASL settings, no KEDA authentication.
func TestKustomizeBaseAndExampleStayPlaintext(t *testing.T) {
	for _, dir := range []string{"deploy/k8s/base", "deploy/k8s/overlays/example"} {
		objs := render(t, dir)
		for _, o := range objs {
			switch o.kind() {
			case "TriggerAuthentication", "ClusterTriggerAuthentication":
				t.Errorf("%s: %s %s", dir, o.kind(), o.name())
			case "ScaledObject":
				for i, tr := range o.list("spec", "triggers") {
					tr := obj(tr.(map[string]any))
					if tr.get("authenticationRef") != nil || tr.str("metadata", "sasl") != "" || tr.str("metadata", "tls") != "" {
						t.Errorf("%s: ScaledObject %s trigger %d authenticates", dir, o.name(), i)
					}
				}
			case "ConfigMap":
				data, _ := o.get("data").(map[string]any)
				for k := range data {
					if strings.HasPrefix(k, "KAFKA_TLS_") || strings.HasPrefix(k, "KAFKA_SASL_") || strings.HasPrefix(k, "REDIS_TLS_") {
						t.Errorf("%s: ConfigMap %s sets %s", dir, o.name(), k)
					}
				}
			}
		}
	}
}

// The secured overlay's credentials are placeholders that say so; its
// Kafka usernames are the principals `ctl acls` writes ACLs for
// (User:mailchimp-heap-<role>).
func TestSecuredOverlayCredentialsArePlaceholders(t *testing.T) {
	objs := render(t, securedOverlay)
	var n int
	for _, s := range objs {
		name := s.name()
		if s.kind() != "Secret" || !(strings.HasPrefix(name, "kafka-credentials-") || strings.HasPrefix(name, "redis-credentials-")) {
			continue
		}
		n++
		data, _ := s.get("data").(map[string]any)
		for k := range data {
			v := secretData(t, s, k)
			if k == "sasl-username" {
				role := strings.TrimPrefix(v, "mailchimp-heap-")
				if !slices.Contains([]string{"ingress", "mapper", "emitter", "topics"}, role) || !strings.HasPrefix(name, "kafka-credentials-"+role+"-") {
					t.Errorf("Secret %s: sasl-username %q, want mailchimp-heap-<role> of its own role", name, v)
				}
				continue
			}
			if !strings.Contains(strings.ToLower(v), "placeholder") {
				t.Errorf("Secret %s key %s does not say it is a placeholder", name, k)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d credential Secrets, want kafka-credentials-{ingress,mapper,emitter,topics} and redis-credentials", n)
	}
}

// Least privilege: every workload is its own Kafka user, and the topics
// Job's user (the only one with CREATE and ALTER) is mounted by no service.
func TestSecuredOverlayOneKafkaUserPerRole(t *testing.T) {
	objs := render(t, securedOverlay)
	users := map[string]string{}   // workload -> username
	secrets := map[string]string{} // Secret -> workload mounting it for Kafka
	for workload, pod := range podTemplates(objs) {
		role, _ := pod.get("metadata", "labels").(map[string]any)["app.kubernetes.io/component"].(string)
		for _, c := range containersOf(pod) {
			env := containerEnv(t, objs, c)
			s, key, err := secretFile(objs, pod, c, env["KAFKA_SASL_USERNAME_FILE"].value)
			if err != nil {
				t.Errorf("%s: KAFKA_SASL_USERNAME_FILE: %v", workload, err)
				continue
			}
			user := secretData(t, s, key)
			if want := "mailchimp-heap-" + role; user != want {
				t.Errorf("%s (role %s) connects as %q, want %q (the principal ctl acls grants the role)", workload, role, user, want)
			}
			if other, ok := secrets[s.name()]; ok && other != workload {
				t.Errorf("%s and %s share the Kafka Secret %s", workload, other, s.name())
			}
			secrets[s.name()] = workload
			users[workload] = user
		}
	}
	seen := map[string]string{}
	for w, u := range users {
		if other, ok := seen[u]; ok {
			t.Errorf("%s and %s are both Kafka user %s", w, other, u)
		}
		seen[u] = w
	}
	if len(users) != 4 {
		t.Errorf("Kafka users of %d workloads, want ingress, mapper, emitter and the topics Job: %v", len(users), users)
	}
}
