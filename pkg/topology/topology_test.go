package topology_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/topology"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml, err string
	}{
		{"ok", "defaults: {partitions: 3}\ntopics:\n  - name: a\n  - name: b\n    partitions: 6\n    configs: {cleanup.policy: compact}\n", ""},
		{"unknown field", "defaults: {partitions: 3}\ntopics:\n  - name: a\n    partitons: 6\n", "unknown field"},
		{"no partitions", "topics:\n  - name: a\n", "partitions must be at least 1"},
		{"twice", "defaults: {partitions: 1}\ntopics:\n  - name: a\n  - name: a\n", "listed twice"},
		{"no topics", "defaults: {partitions: 1}\n", "no topics"},
		{"min isr above replication", "defaults: {partitions: 1, replication: 1, configs: {min.insync.replicas: \"2\"}}\ntopics:\n  - name: a\n", "does not fit"},
		{"bad replication", "defaults: {partitions: 1, replication: -2}\ntopics:\n  - name: a\n", "replication must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := topology.Parse([]byte(tt.yaml))
			if tt.err == "" && err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	l, err := topology.Parse([]byte(`
defaults: {partitions: 6, replication: 3, configs: {min.insync.replicas: "2", retention.ms: "1000"}}
topics:
  - name: c
    partitions: 12
    configs: {cleanup.policy: compact, retention.ms: "-1"}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := l.Resolve(l.Topics[0])
	want := topology.Settings{Partitions: 12, Replication: 3, Configs: map[string]string{
		"min.insync.replicas": "2", "retention.ms": "-1", "cleanup.policy": "compact"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Resolve (-want +got):\n%s", diff)
	}
}

func admin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkatest.Brokers(t)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// create makes a topic outside the layout and waits until metadata shows it.
func create(t *testing.T, adm *kadm.Client, n int32, configs map[string]*string, topic string) {
	t.Helper()
	if _, err := adm.CreateTopic(ctx(t), n, -1, configs, topic); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, topic+" in metadata after creation", 30*time.Second, func() bool {
		return partitions(t, adm, topic) == int(n)
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

var layout = `
defaults:
  partitions: 3
  configs: {min.insync.replicas: "1"}
topics:
  - name: raw
    configs: {retention.ms: "86400000"}
  - name: events
    partitions: 4
  - name: identities
    partitions: 2
    configs: {cleanup.policy: compact, delete.retention.ms: "3600000"}
`

func mustParse(t *testing.T, s string) topology.Layout {
	t.Helper()
	l, err := topology.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func actions(cs []topology.Change) []string {
	var out []string
	for _, c := range cs {
		s := c.Action + " " + c.Topic[strings.LastIndex(c.Topic, ".")+1:]
		if c.Skipped {
			s += " (skipped)"
		}
		out = append(out, s)
	}
	return out
}

func configs(t *testing.T, adm *kadm.Client, topic string) map[string]string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range rcs[0].Configs {
		out[c.Key] = c.MaybeValue()
	}
	return out
}

func partitions(t *testing.T, adm *kadm.Client, topic string) int {
	t.Helper()
	d, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx(t)), topic) // not the client's metadata cache
	if err != nil {
		t.Fatal(err)
	}
	return len(d[topic].Partitions)
}

func TestTopologyApplyTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	adm, prefix := admin(t), kafkatest.Prefix(t)
	l := mustParse(t, layout)
	o := topology.Options{Prefix: prefix}

	dry, err := topology.Apply(ctx(t), adm, l, topology.Options{Prefix: prefix, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"create events", "create identities", "create raw"}, actions(dry)); diff != "" {
		t.Fatalf("dry run (-want +got):\n%s", diff)
	}
	if n := partitions(t, adm, prefix+"raw"); n != 0 {
		t.Fatalf("dry run created raw with %d partitions", n)
	}

	first, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"create events", "create identities", "create raw"}, actions(first)); diff != "" {
		t.Fatalf("first apply (-want +got):\n%s", diff)
	}
	second, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second apply changed %v", second)
	}
	for topic, want := range map[string]int{"raw": 3, "events": 4, "identities": 2} {
		if n := partitions(t, adm, prefix+topic); n != want {
			t.Errorf("%s has %d partitions, want %d", topic, n, want)
		}
	}
	c := configs(t, adm, prefix+"identities")
	if c["cleanup.policy"] != "compact" || c["delete.retention.ms"] != "3600000" || c["min.insync.replicas"] != "1" {
		t.Errorf("identities configs = cleanup.policy %q delete.retention.ms %q min.insync.replicas %q",
			c["cleanup.policy"], c["delete.retention.ms"], c["min.insync.replicas"])
	}
	if got := configs(t, adm, prefix+"raw")["retention.ms"]; got != "86400000" {
		t.Errorf("raw retention.ms = %q", got)
	}
}

func TestTopologyGrowsPartitionsNeverShrinks(t *testing.T) {
	t.Parallel()
	adm, prefix := admin(t), kafkatest.Prefix(t)
	for topic, n := range map[string]int32{"raw": 2, "events": 6} {
		create(t, adm, n, nil, prefix+topic)
	}
	l := mustParse(t, "defaults: {partitions: 4}\ntopics:\n  - name: raw\n  - name: events\n")
	changes, err := topology.Apply(ctx(t), adm, l, topology.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"partitions events (skipped)", "partitions raw"}, actions(changes)); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	if n := partitions(t, adm, prefix+"raw"); n != 4 {
		t.Errorf("raw has %d partitions, want 4", n)
	}
	if n := partitions(t, adm, prefix+"events"); n != 6 {
		t.Errorf("events has %d partitions, want 6 (never shrunk)", n)
	}
	again, err := topology.Apply(ctx(t), adm, l, topology.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	// The shrink stays reported, and nothing else.
	if diff := cmp.Diff([]string{"partitions events (skipped)"}, actions(again)); diff != "" {
		t.Fatalf("second apply (-want +got):\n%s", diff)
	}
}

func TestApplyRejectsOverridesThatCannotWork(t *testing.T) {
	l := mustParse(t, "defaults: {partitions: 1, replication: 3, configs: {min.insync.replicas: \"2\"}}\ntopics:\n  - name: a\n")
	// Checked before any request: no cluster needed.
	_, err := topology.Apply(context.Background(), nil, l, topology.Options{Replication: 1})
	if err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("Apply = %v, want min.insync.replicas does not fit", err)
	}
}

func TestTopologyConfigsConverge(t *testing.T) {
	t.Parallel()
	adm, prefix := admin(t), kafkatest.Prefix(t)
	short, seg := "1000", "1048576"
	create(t, adm, 3, map[string]*string{"retention.ms": &short, "segment.bytes": &seg}, prefix+"raw")
	l := mustParse(t, "defaults: {partitions: 3}\ntopics:\n  - name: raw\n    configs: {retention.ms: \"604800000\", cleanup.policy: delete}\n")
	o := topology.Options{Prefix: prefix, Configs: map[string]string{"min.insync.replicas": "1"}}
	changes, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	// cleanup.policy is already delete (the default): only retention differs.
	var details []string
	for _, c := range changes {
		details = append(details, c.Action+" "+c.Detail)
	}
	if diff := cmp.Diff([]string{"config retention.ms: 1000 -> 604800000"}, details); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	c := configs(t, adm, prefix+"raw")
	if c["retention.ms"] != "604800000" {
		t.Errorf("retention.ms = %q", c["retention.ms"])
	}
	// Incremental alter: a config the layout does not name keeps its value.
	if c["segment.bytes"] != seg {
		t.Errorf("segment.bytes = %q, want %s kept", c["segment.bytes"], seg)
	}
	again, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second apply changed %v", again)
	}
}
