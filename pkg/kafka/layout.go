package kafka

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/goccy/go-yaml"

	"github.com/mailchimp-heap/mailchimp-heap/deploy"
)

// The topic names are written once, in deploy/topics.yaml (embedded by
// package deploy), each under the role the code knows the topic by; the
// layout's settings are pkg/topology's to apply and check.

// roles maps each layout role to its field of Topics.
var roles = map[string]func(*Topics) *string{
	"raw":        func(t *Topics) *string { return &t.Raw },
	"events":     func(t *Topics) *string { return &t.Events },
	"pending":    func(t *Topics) *string { return &t.Pending },
	"raw-dlq":    func(t *Topics) *string { return &t.RawDLQ },
	"events-dlq": func(t *Topics) *string { return &t.EventsDLQ },
	"cursors":    func(t *Topics) *string { return &t.Cursors },
	"tokens":     func(t *Topics) *string { return &t.Tokens },
	"campaigns":  func(t *Topics) *string { return &t.Campaigns },
	"identities": func(t *Topics) *string { return &t.Identities },
}

// layoutTopics are the names without a prefix.
var layoutTopics = mustTopics(deploy.Topics)

func mustTopics(layout []byte) Topics {
	t, err := topicsFromLayout(layout)
	if err != nil {
		panic(fmt.Sprintf("kafka: the embedded deploy/topics.yaml: %v", err)) // caught by its tests
	}
	return t
}

// topicsFromLayout reads the topic names from a layout by role: every
// topic has a role, and every role one topic.
func topicsFromLayout(layout []byte) (Topics, error) {
	var l struct {
		Topics []struct {
			Name string `yaml:"name"`
			Role string `yaml:"role"`
		} `yaml:"topics"`
	}
	if err := yaml.Unmarshal(layout, &l); err != nil {
		return Topics{}, err
	}
	var t Topics
	var errs []error
	for _, tp := range l.Topics {
		field, ok := roles[tp.Role]
		switch {
		case tp.Name == "":
			errs = append(errs, fmt.Errorf("a topic with role %q has no name", tp.Role))
		case !ok:
			errs = append(errs, fmt.Errorf("topic %s: role %q is none of the pipeline's", tp.Name, tp.Role))
		case *field(&t) != "":
			errs = append(errs, fmt.Errorf("topic %s: role %s is %s's already", tp.Name, tp.Role, *field(&t)))
		default:
			*field(&t) = tp.Name
		}
	}
	for _, role := range slices.Sorted(maps.Keys(roles)) {
		if *roles[role](&t) == "" {
			errs = append(errs, fmt.Errorf("no topic has role %s", role))
		}
	}
	return t, errors.Join(errs...)
}
