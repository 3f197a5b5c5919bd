package topology

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mailchimp-heap/mailchimp-heap/deploy"
)

// Default is deploy/topics.yaml as this build embeds it: the layout the
// services check their topics against.
func Default() Layout {
	l, err := Parse(deploy.Topics)
	if err != nil {
		panic(fmt.Sprintf("topology: the embedded deploy/topics.yaml is invalid: %v", err)) // caught by its tests
	}
	return l
}

// Finding is a topic laid out otherwise than the layout says.
type Finding struct {
	Topic  string
	Detail string
	// Fatal findings break the pipeline's guarantees (a state topic that
	// is not compacted loses its state); the others are worth a warning.
	Fatal bool
}

func (f Finding) String() string {
	return fmt.Sprintf("topic %s %s: run `ctl topics apply` (deploy/topics.yaml)", f.Topic, f.Detail)
}

// Verify compares the topics found (name -> partitions, from the
// services' preflight) with l under prefix. It reads topic configs when the
// principal may (DESCRIBE_CONFIGS is not among the services' ACLs) to check
// compaction; without that permission it checks partitions only.
func Verify(ctx context.Context, adm *kadm.Client, l Layout, prefix string, found map[string]int) ([]Finding, error) {
	var out []Finding
	var names []string
	want := map[string]Settings{}
	for _, t := range l.Topics {
		name := prefix + t.Name
		n, ok := found[name]
		if !ok {
			continue // not one this role uses
		}
		s := l.Resolve(t)
		want[name] = s
		names = append(names, name)
		if n < int(s.Partitions) {
			out = append(out, Finding{Topic: name, Detail: fmt.Sprintf("has %d partitions where the layout has %d (fewer members can share the work)", n, s.Partitions)})
		}
	}
	if len(names) == 0 {
		return out, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return out, nil // not permitted or not answered: partitions only
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			if errors.Is(rc.Err, kerr.TopicAuthorizationFailed) {
				continue
			}
			return out, fmt.Errorf("topology: describe %s: %w", rc.Name, rc.Err)
		}
		wantCompact := strings.Contains(want[rc.Name].Configs["cleanup.policy"], "compact")
		have := ""
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" {
				have = c.MaybeValue()
			}
		}
		if wantCompact && !strings.Contains(have, "compact") {
			out = append(out, Finding{Topic: rc.Name, Fatal: true, Detail: fmt.Sprintf("has cleanup.policy=%s where the layout has compact (its state would expire)", have)})
		}
		if !wantCompact && strings.Contains(have, "compact") {
			out = append(out, Finding{Topic: rc.Name, Fatal: true, Detail: "is compacted where the layout keeps every record (events with one key would be lost)"})
		}
	}
	return out, nil
}
