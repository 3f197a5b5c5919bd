package check

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The NetworkPolicies are checked by what they let through, computed as a
// CNI does: a pod selected by a policy of a direction (Ingress, Egress) is
// isolated in it, and accepts only the union of the rules of the policies
// that select it. Each allowance is a port ("TCP/8080", "any port") and a
// peer ("namespace monitoring", "anywhere", ...).

// selects reports whether a LabelSelector (matchLabels and
// matchExpressions; empty: everything) matches labels.
func selects(sel map[string]any, labels map[string]any) bool {
	ml, _ := sel["matchLabels"].(map[string]any)
	for k, v := range ml {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range obj(sel).list("matchExpressions") {
		e := obj(e.(map[string]any))
		var values []string
		for _, v := range e.list("values") {
			values = append(values, fmt.Sprint(v))
		}
		v, has := labels[e.str("key")]
		in := has && slices.Contains(values, fmt.Sprint(v))
		switch e.str("operator") {
		case "In":
			if !in {
				return false
			}
		case "NotIn":
			if in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// selectorString writes a LabelSelector as k=v,... then its expressions.
func selectorString(sel map[string]any) string {
	ml, _ := sel["matchLabels"].(map[string]any)
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(ml)) {
		kv = append(kv, fmt.Sprintf("%s=%v", k, ml[k]))
	}
	for _, e := range obj(sel).list("matchExpressions") {
		e := obj(e.(map[string]any))
		kv = append(kv, fmt.Sprintf("%s %s %v", e.str("key"), e.str("operator"), e.get("values")))
	}
	return strings.Join(kv, ",")
}

// peerString names a NetworkPolicyPeer: "namespace monitoring" (a
// namespace by its kubernetes.io/metadata.name), "namespace X pods {...}",
// "this namespace's pods {...}", "ipBlock CIDR except [...]".
func peerString(p obj) string {
	sel := func(field string) map[string]any { m, _ := p.get(field).(map[string]any); return m }
	switch {
	case p.get("ipBlock") != nil:
		return fmt.Sprintf("ipBlock %s except %v", p.str("ipBlock", "cidr"), p.get("ipBlock", "except"))
	case p.get("namespaceSelector") != nil:
		ns := "{" + selectorString(sel("namespaceSelector")) + "}"
		if name := p.str("namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"); ns == "{kubernetes.io/metadata.name="+name+"}" {
			ns = name
		}
		if p.get("podSelector") != nil {
			return fmt.Sprintf("namespace %s pods {%s}", ns, selectorString(sel("podSelector")))
		}
		return "namespace " + ns
	case p.get("podSelector") != nil:
		return fmt.Sprintf("this namespace's pods {%s}", selectorString(sel("podSelector")))
	}
	return fmt.Sprint(map[string]any(p))
}

// podLabels are a pod template's labels.
func podLabels(pod obj) map[string]any {
	l, _ := pod.get("metadata", "labels").(map[string]any)
	return l
}

// containerPort resolves a named port against the pod's containers.
func containerPort(pod obj, name string) (int64, bool) {
	for _, c := range containersOf(pod) {
		for _, p := range c.list("ports") {
			if p := obj(p.(map[string]any)); p.str("name") == name {
				return p.num("containerPort"), true
			}
		}
	}
	return 0, false
}

// allowed is what the policies let into (direction "Ingress") or out of
// ("Egress") pod: port -> sorted peers. isolated is false when no policy
// selects the pod for that direction (then everything is allowed).
func allowed(objs []obj, pod obj, direction string) (isolated bool, out map[string][]string) {
	field, peersField := "ingress", "from"
	if direction == "Egress" {
		field, peersField = "egress", "to"
	}
	out = map[string][]string{}
	for _, np := range objs {
		if np.kind() != "NetworkPolicy" {
			continue
		}
		sel, _ := np.get("spec", "podSelector").(map[string]any)
		if sel == nil || !selects(sel, podLabels(pod)) {
			continue
		}
		var types []string
		for _, ty := range np.list("spec", "policyTypes") {
			types = append(types, fmt.Sprint(ty))
		}
		if len(types) == 0 { // the API server's default
			types = []string{"Ingress"}
			if np.get("spec", "egress") != nil {
				types = append(types, "Egress")
			}
		}
		if !slices.Contains(types, direction) {
			continue
		}
		isolated = true
		for _, r := range np.list("spec", field) {
			r := obj(r.(map[string]any))
			peers := []string{"anywhere"}
			if ps := r.list(peersField); len(ps) > 0 {
				peers = nil
				for _, p := range ps {
					peers = append(peers, peerString(obj(p.(map[string]any))))
				}
			}
			ports := []string{"any port"}
			if ps := r.list("ports"); len(ps) > 0 {
				ports = nil
				for _, p := range ps {
					p := obj(p.(map[string]any))
					proto := cmp.Or(p.str("protocol"), "TCP")
					port := fmt.Sprint(p.get("port"))
					if p.get("port") == nil {
						port = "any"
					} else if name := p.str("port"); name != "" {
						if n, ok := containerPort(pod, name); ok {
							port = fmt.Sprint(n) // a named port
						}
					}
					if p.get("endPort") != nil {
						port += fmt.Sprintf("-%v", p.get("endPort"))
					}
					ports = append(ports, proto+"/"+port)
				}
			}
			for _, port := range ports {
				for _, peer := range peers {
					if !slices.Contains(out[port], peer) {
						out[port] = append(out[port], peer)
					}
				}
			}
		}
	}
	for _, peers := range out {
		slices.Sort(peers)
	}
	return isolated, out
}

// defaultDeny finds the policy that isolates every pod of the namespace in
// direction and allows nothing itself.
func defaultDeny(objs []obj, direction string) obj {
	field := strings.ToLower(direction)
	for _, np := range objs {
		sel, _ := np.get("spec", "podSelector").(map[string]any)
		if np.kind() != "NetworkPolicy" || sel == nil || len(sel) != 0 || np.get("spec", field) != nil {
			continue
		}
		for _, ty := range np.list("spec", "policyTypes") {
			if ty == direction {
				return np
			}
		}
	}
	return nil
}

func TestKustomizeNetworkPoliciesSelectPods(t *testing.T) {
	for _, dir := range append([]string{"deploy/k8s/base"}, overlays...) {
		objs := render(t, dir)
		pods := podTemplates(objs)
		n := 0
		for _, np := range objs {
			if np.kind() != "NetworkPolicy" {
				continue
			}
			n++
			sel, _ := np.get("spec", "podSelector").(map[string]any)
			if sel == nil {
				t.Errorf("%s: NetworkPolicy %s has no podSelector", dir, np.name())
				continue
			}
			// A selector that matches no workload is a typo that leaves
			// the pods it meant open (or closed).
			var matched []string
			for w, pod := range pods {
				if selects(sel, podLabels(pod)) {
					matched = append(matched, w)
				}
			}
			if len(matched) == 0 {
				t.Errorf("%s: NetworkPolicy %s selects no workload's pods", dir, np.name())
			}
		}
		if n == 0 {
			t.Errorf("%s: no NetworkPolicy", dir)
		}
	}
}

// Inbound: nothing but the webhooks from the ingress controller and the
// metrics from Prometheus.
func TestKustomizeNetworkPolicyIngress(t *testing.T) {
	for _, dir := range append([]string{"deploy/k8s/base"}, overlays...) {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if defaultDeny(objs, "Ingress") == nil {
				t.Error("no default-deny policy for inbound traffic (podSelector {}, policyTypes [Ingress], no rules)")
			}
			port := func(w, name string) string { return "TCP/" + strconv.FormatInt(workloads[w].ports[name], 10) }
			monitoring := []string{"namespace monitoring"}
			want := map[string]map[string][]string{
				"Deployment/ingress": {
					port("ingress", "http"):    {"namespace ingress-nginx"},
					port("ingress", adminPort): monitoring,
				},
				"StatefulSet/mapper":        {port("mapper", adminPort): monitoring},
				"StatefulSet/emitter":       {port("emitter", adminPort): monitoring},
				"Job/mailchimp-heap-topics": {},
			}
			pods := podTemplates(objs)
			for w := range pods {
				if _, ok := want[w]; !ok {
					t.Errorf("%s: a workload this test does not know; say what may reach it", w)
				}
			}
			for w, wantAllowed := range want {
				pod, ok := pods[w]
				if !ok {
					t.Errorf("no %s", w)
					continue
				}
				isolated, got := allowed(objs, pod, "Ingress")
				if !isolated {
					t.Errorf("%s: no NetworkPolicy isolates its pods: anything may connect", w)
					continue
				}
				if !mapsEqual(got, wantAllowed) {
					t.Errorf("%s accepts %v, want %v", w, got, wantAllowed)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// Outbound (the overlays): DNS, Kafka on each broker's port, Redis on its
// port for the services, HTTPS for the two that call Heap and Mailchimp,
// and nothing else. Where a broker or Redis is a Service in the cluster
// (NAME.NAMESPACE.svc), its namespace must be an allowed peer.
func TestKustomizeNetworkPolicyEgress(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, objs []obj) {
		if defaultDeny(objs, "Egress") == nil {
			t.Error("no default-deny policy for outbound traffic (podSelector {}, policyTypes [Egress], no rules)")
		}
		callsHTTPS := map[string]bool{"Deployment/ingress": true, "StatefulSet/emitter": true}
		for w, pod := range podTemplates(objs) {
			t.Run(w, func(t *testing.T) {
				isolated, got := allowed(objs, pod, "Egress")
				if !isolated {
					t.Fatal("no NetworkPolicy isolates its pods: they may connect anywhere")
				}
				dns := []string{"namespace kube-system pods {k8s-app=kube-dns}"}
				want := map[string][]string{"UDP/53": dns, "TCP/53": dns}
				// endpoint: host:port this pod connects to; "" host: any.
				var endpoints []string
				env := containerEnv(t, objs, containersOf(pod)[0])
				brokers := env["KAFKA_BROKERS"].value
				if brokers == "" {
					t.Fatal("no KAFKA_BROKERS")
				}
				endpoints = append(endpoints, strings.Split(brokers, ",")...)
				if usesRedis(w) {
					endpoints = append(endpoints, redisAddr(t, objs, pod))
				}
				for _, ep := range endpoints {
					host, p, err := net.SplitHostPort(strings.TrimSpace(ep))
					if err != nil {
						t.Errorf("address %q: %v", ep, err)
						continue
					}
					peers := got["TCP/"+p]
					if len(peers) == 0 {
						t.Errorf("%s: port %s is not allowed out", ep, p)
						continue
					}
					want["TCP/"+p] = peers // the peers are the overlay's to choose...
					if ns := serviceNamespace(host); ns != "" && !slices.ContainsFunc(peers, func(peer string) bool {
						return peer == "anywhere" || peer == "namespace "+ns || strings.HasPrefix(peer, "namespace "+ns+" ")
					}) {
						// ...as long as they include where the address is.
						t.Errorf("%s is in namespace %s, but port %s is allowed only to %v", ep, ns, p, peers)
					}
				}
				if callsHTTPS[w] {
					want["TCP/443"] = got["TCP/443"]
					if len(got["TCP/443"]) == 0 {
						t.Error("HTTPS (Heap, Mailchimp) is not allowed out")
					}
				}
				if !mapsEqual(got, want) {
					t.Errorf("allowed out: %v, want exactly %v", got, want)
				}
			})
		}
	})
}

// serviceNamespace is the namespace of an in-cluster Service name
// (svc.ns.svc, pod.svc.ns.svc, with or without .cluster.local), else "".
func serviceNamespace(host string) string {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	i := slices.Index(labels, "svc")
	if i < 2 || (i != len(labels)-1 && strings.Join(labels[i+1:], ".") != "cluster.local") {
		return ""
	}
	return labels[i-1]
}

// redisAddr is host:port of the Redis a pod's container connects to, from
// REDIS_URL (a Secret's key) or the file REDIS_URL_FILE names.
func redisAddr(t *testing.T, objs []obj, pod obj) string {
	t.Helper()
	c := containersOf(pod)[0]
	var raw string
	for _, e := range c.list("env") {
		e := obj(e.(map[string]any))
		switch e.str("name") {
		case "REDIS_URL":
			if ref := e.get("valueFrom", "secretKeyRef"); ref != nil {
				s := find(objs, "Secret", e.str("valueFrom", "secretKeyRef", "name"))
				if s == nil {
					t.Fatalf("REDIS_URL: no Secret %s", e.str("valueFrom", "secretKeyRef", "name"))
				}
				raw = secretData(t, s, e.str("valueFrom", "secretKeyRef", "key"))
			} else {
				raw = e.str("value")
			}
		case "REDIS_URL_FILE":
			s, key, err := secretFile(objs, pod, c, e.str("value"))
			if err != nil {
				t.Fatalf("REDIS_URL_FILE: %v", err)
			}
			raw = secretData(t, s, key)
		}
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		t.Fatalf("REDIS_URL %q: not a URL with a host (%v)", raw, err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "6379")
	}
	return u.Host
}
