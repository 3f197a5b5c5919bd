package topology_test

import (
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/topology"
)

// The shipped layout (where pkg/kafka reads the topic names from) compacts
// exactly the topics the topic contract needs compacted, and can be applied
// to the production shape (min ISR below replication).
func TestShippedLayoutMatchesTopicContract(t *testing.T) {
	l, err := topology.Load("../../deploy/topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	contract := kafka.NewTopics("")
	for _, tp := range l.Topics {
		s := l.Resolve(tp)
		compacted := s.Configs["cleanup.policy"] == "compact"
		if compacted != contract.Compacted(tp.Name) {
			t.Errorf("%s: compacted %v in the layout, %v in pkg/kafka", tp.Name, compacted, contract.Compacted(tp.Name))
		}
		if s.Replication < 3 || s.Configs["min.insync.replicas"] != "2" {
			t.Errorf("%s: replication %d, min.insync.replicas %q: want 3 and 2 in production", tp.Name, s.Replication, s.Configs["min.insync.replicas"])
		}
	}
}

// What docker-compose's topic setup does, on one broker: apply the shipped
// layout with the single-node overrides, then again with no change.
func TestTopologyShippedLayoutSingleBroker(t *testing.T) {
	t.Parallel()
	l, err := topology.Load("../../deploy/topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	adm, prefix := admin(t), kafkatest.Prefix(t)
	o := topology.Options{Prefix: prefix, Replication: 1, Configs: map[string]string{"min.insync.replicas": "1"}}
	first, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(l.Topics) {
		t.Errorf("first apply: %d changes for %d topics: %v", len(first), len(l.Topics), first)
	}
	second, err := topology.Apply(ctx(t), adm, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Errorf("second apply changed %v", second)
	}
}
