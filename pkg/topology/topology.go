// Package topology applies the pipeline's declared topic layout (partitions,
// replication, configs such as compaction, retention and min ISR) to a
// cluster, idempotently: it creates what is missing, grows partitions and
// converges the configs the file names, and never shrinks or deletes.
package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Layout is the declarative topic file (deploy/topics.yaml).
type Layout struct {
	// Defaults apply to every topic; a topic's own settings override them.
	Defaults Settings `yaml:"defaults"`
	Topics   []Topic  `yaml:"topics"`
}

// Settings are what a topic is created and kept with.
type Settings struct {
	Partitions int32 `yaml:"partitions"`
	// Replication is the replication factor of created topics; -1 (or
	// absent) is the broker's default.replication.factor.
	Replication int16 `yaml:"replication"`
	// Configs are topic configs; values are strings in Kafka's own syntax.
	Configs map[string]string `yaml:"configs"`
}

// Topic is one topic of the layout, named without TOPIC_PREFIX.
type Topic struct {
	Name string `yaml:"name"`
	// Role is what the pipeline calls the topic (pkg/kafka.NewTopics
	// reads the name by it); a layout of other topics may leave it out.
	Role     string `yaml:"role"`
	Settings `yaml:",inline"`
}

// Load reads and validates a layout file; unknown fields are errors.
func Load(path string) (Layout, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Layout{}, fmt.Errorf("topology: %w", err)
	}
	l, err := Parse(b)
	if err != nil {
		return Layout{}, fmt.Errorf("topology: %s: %w", path, err)
	}
	return l, nil
}

// Parse decodes a layout strictly and validates it.
func Parse(b []byte) (Layout, error) {
	var l Layout
	if err := yaml.UnmarshalWithOptions(b, &l, yaml.Strict()); err != nil {
		return Layout{}, fmt.Errorf("parse: %w", err)
	}
	return l, l.Validate()
}

// Validate reports what cannot be applied.
func (l Layout) Validate() error {
	var errs []error
	if len(l.Topics) == 0 {
		errs = append(errs, errors.New("no topics"))
	}
	seen := map[string]bool{}
	for _, t := range l.Topics {
		if t.Name == "" {
			errs = append(errs, errors.New("a topic has no name"))
			continue
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("topic %s: listed twice", t.Name))
		}
		seen[t.Name] = true
		s := l.Resolve(t)
		if s.Partitions < 1 {
			errs = append(errs, fmt.Errorf("topic %s: partitions must be at least 1 (here or in defaults)", t.Name))
		}
		if s.Replication == 0 || s.Replication < -1 {
			errs = append(errs, fmt.Errorf("topic %s: replication must be -1 (broker default) or at least 1", t.Name))
		}
		if err := fits(s); err != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// fits reports a min ISR no replica set can meet: every acks=all write to
// the topic would fail.
func fits(s Settings) error {
	v, ok := s.Configs["min.insync.replicas"]
	if !ok || s.Replication < 1 {
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n > int(s.Replication) {
		return fmt.Errorf("min.insync.replicas %s does not fit replication %d", v, s.Replication)
	}
	return nil
}

// Resolve returns t's settings with the defaults filled in.
func (l Layout) Resolve(t Topic) Settings {
	s := Settings{Partitions: l.Defaults.Partitions, Replication: l.Defaults.Replication, Configs: map[string]string{}}
	if s.Replication == 0 {
		s.Replication = -1
	}
	maps.Copy(s.Configs, l.Defaults.Configs)
	if t.Partitions != 0 {
		s.Partitions = t.Partitions
	}
	if t.Replication != 0 {
		s.Replication = t.Replication
	}
	maps.Copy(s.Configs, t.Configs)
	return s
}

// Options adjust a layout at apply time, so one file serves a single-broker
// development cluster and production alike.
type Options struct {
	Prefix string // prepended to every topic name (TOPIC_PREFIX)
	// Replication, when non-zero, overrides every topic's replication factor.
	Replication int16
	// Configs override the file's configs on every topic.
	Configs map[string]string
	DryRun  bool // report what would change, change nothing
}

// Change is one difference between the layout and the cluster, applied
// unless the run was a dry run or Skipped says why not.
type Change struct {
	Topic  string
	Action string // create, partitions, config
	Detail string
	// Skipped: a difference the command never applies (shrinking
	// partitions, changing replication); the operator decides.
	Skipped bool
}

func (c Change) String() string {
	s := fmt.Sprintf("%-7s %s: %s", c.Action, c.Topic, c.Detail)
	if c.Skipped {
		s += " (not applied)"
	}
	return s
}

// Apply brings the cluster to the layout and returns what differed, in topic
// order. Applying the same layout again returns no changes.
func Apply(ctx context.Context, adm *kadm.Client, l Layout, o Options) ([]Change, error) {
	want := map[string]Settings{}
	var names []string
	for _, t := range l.Topics {
		s := l.Resolve(t)
		if o.Replication != 0 {
			s.Replication = o.Replication
		}
		maps.Copy(s.Configs, o.Configs)
		if err := fits(s); err != nil {
			return nil, fmt.Errorf("topology: topic %s with the overrides: %w", t.Name, err)
		}
		want[o.Prefix+t.Name] = s
		names = append(names, o.Prefix+t.Name)
	}
	sort.Strings(names)

	details, err := adm.ListTopics(fresh(ctx), names...)
	if err != nil {
		return nil, fmt.Errorf("topology: list topics: %w", err)
	}
	var changes, create []Change
	var existing []string
	for _, name := range names {
		d, ok := details[name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			s := want[name]
			create = append(create, Change{Topic: name, Action: "create",
				Detail: fmt.Sprintf("partitions=%d replication=%d %s", s.Partitions, s.Replication, formatConfigs(s.Configs))})
		case d.Err != nil:
			return nil, fmt.Errorf("topology: topic %s: %w", name, d.Err)
		default:
			existing = append(existing, name)
		}
	}
	changes = append(changes, create...)

	// Existing topics: partitions only grow; replication is reported, since
	// changing it is a reassignment the operator plans.
	for _, name := range existing {
		d, s := details[name], want[name]
		have := int32(len(d.Partitions))
		switch {
		case s.Partitions > have:
			changes = append(changes, Change{Topic: name, Action: "partitions", Detail: fmt.Sprintf("%d -> %d", have, s.Partitions)})
		case s.Partitions < have:
			changes = append(changes, Change{Topic: name, Action: "partitions", Skipped: true,
				Detail: fmt.Sprintf("has %d, layout says %d: partitions never shrink", have, s.Partitions)})
		}
		if rf := int16(d.Partitions.NumReplicas()); s.Replication > 0 && rf != s.Replication {
			changes = append(changes, Change{Topic: name, Action: "replication", Skipped: true,
				Detail: fmt.Sprintf("has %d, layout says %d: reassign partitions to change it", rf, s.Replication)})
		}
	}
	configChanges, err := diffConfigs(ctx, adm, existing, want)
	if err != nil {
		return nil, err
	}
	changes = append(changes, configChanges...)
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].Topic < changes[j].Topic })
	if o.DryRun {
		return changes, nil
	}

	for _, c := range changes {
		if c.Skipped {
			continue
		}
		var err error
		switch c.Action {
		case "create":
			err = create1(ctx, adm, c.Topic, want[c.Topic])
		case "partitions":
			err = grow(ctx, adm, c.Topic, want[c.Topic].Partitions)
		}
		if err != nil {
			return changes, err
		}
	}
	if err := alterConfigs(ctx, adm, changes, want); err != nil {
		return changes, err
	}
	return changes, settle(ctx, adm, names, want)
}

func create1(ctx context.Context, adm *kadm.Client, topic string, s Settings) error {
	cfg := map[string]*string{}
	for k, v := range s.Configs {
		cfg[k] = &v
	}
	_, err := adm.CreateTopic(ctx, s.Partitions, s.Replication, cfg, topic)
	// Someone else created it since we listed: the next run converges it.
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("topology: create %s: %w", topic, err)
	}
	return nil
}

func grow(ctx context.Context, adm *kadm.Client, topic string, to int32) error {
	resp, err := adm.UpdatePartitions(ctx, int(to), topic)
	if err == nil {
		var r kadm.CreatePartitionsResponse
		if r, err = resp.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		return fmt.Errorf("topology: partitions of %s to %d: %w", topic, to, err)
	}
	return nil
}

// diffConfigs compares the configs the layout names with the topics' current
// values; configs the layout does not name are left as they are.
func diffConfigs(ctx context.Context, adm *kadm.Client, topics []string, want map[string]Settings) ([]Change, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("topology: describe configs: %w", err)
	}
	var changes []Change
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("topology: describe configs of %s: %w", rc.Name, rc.Err)
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		w := want[rc.Name].Configs
		for _, k := range slices.Sorted(maps.Keys(w)) {
			cur, ok := have[k]
			if ok && cur == w[k] {
				continue
			}
			if !ok {
				cur = "(unset)"
			}
			changes = append(changes, Change{Topic: rc.Name, Action: "config", Detail: fmt.Sprintf("%s: %s -> %s", k, cur, w[k])})
		}
	}
	return changes, nil
}

// alterConfigs sets, per topic, the configs that differ, with incremental
// alter so the configs the layout does not name keep their values.
func alterConfigs(ctx context.Context, adm *kadm.Client, changes []Change, want map[string]Settings) error {
	done := map[string]bool{}
	for _, c := range changes {
		if c.Action != "config" || done[c.Topic] {
			continue
		}
		done[c.Topic] = true
		var alter []kadm.AlterConfig
		for _, k := range slices.Sorted(maps.Keys(want[c.Topic].Configs)) {
			v := want[c.Topic].Configs[k]
			alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
		resp, err := adm.AlterTopicConfigs(ctx, alter, c.Topic)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resp.On(c.Topic, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			return fmt.Errorf("topology: configs of %s: %w", c.Topic, err)
		}
	}
	return nil
}

// fresh makes kadm ask the brokers for metadata instead of answering from
// the client's cache (kept up to 5 s): a topic created or grown moments ago,
// by us or by someone else, must be seen as it is now. Asking for authorized
// operations is kadm's documented way to bypass that cache.
func fresh(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }

// settle waits until metadata shows every topic with its partitions led and
// the configs the layout names, so what starts after an apply (the services,
// a second apply) sees the result: brokers learn of changes asynchronously.
func settle(ctx context.Context, adm *kadm.Client, names []string, want map[string]Settings) error {
	for {
		details, err := adm.ListTopics(fresh(ctx), names...)
		if err == nil && settled(details, names, want) {
			pending, err := diffConfigs(ctx, adm, names, want)
			if err == nil && len(pending) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topology: waiting for the brokers to show the layout: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func settled(details kadm.TopicDetails, names []string, want map[string]Settings) bool {
	for _, name := range names {
		d, ok := details[name]
		if !ok || d.Err != nil || int32(len(d.Partitions)) < want[name].Partitions {
			return false
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 || p.Err != nil {
				return false
			}
		}
	}
	return true
}

func formatConfigs(c map[string]string) string {
	var b bytes.Buffer
	for i, k := range slices.Sorted(maps.Keys(c)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, c[k])
	}
	return b.String()
}
