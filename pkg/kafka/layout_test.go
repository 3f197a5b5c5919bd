package kafka

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// Every name comes from the embedded layout, under the prefix, and no two
// roles share one.
func TestNewTopicsFromLayout(t *testing.T) {
	all := NewTopics("p.").All()
	if len(all) != len(roles) {
		t.Fatalf("All() has %d topics, the layout %d roles", len(all), len(roles))
	}
	for _, name := range all {
		if !strings.HasPrefix(name, "p.") || len(name) == len("p.") {
			t.Errorf("topic %q: want p. and a name", name)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(all)))) != len(all) {
		t.Errorf("a name is listed twice: %v", all)
	}
	if got := NewTopics(""); got != layoutTopics {
		t.Errorf("NewTopics(\"\") = %+v, want the layout's %+v", got, layoutTopics)
	}
}

func TestTopicsFromLayout(t *testing.T) {
	full := func(replace, with string) string {
		var b strings.Builder
		b.WriteString("defaults:\n  partitions: 1\ntopics:\n")
		for _, role := range slices.Sorted(maps.Keys(roles)) {
			b.WriteString("  - name: t." + role + "\n    role: " + role + "\n")
		}
		return strings.Replace(b.String(), replace, with, 1)
	}
	cases := []struct {
		name, layout, err string
	}{
		{"every role", full("", ""), ""},
		{"a role missing", full("    role: tokens\n", ""), "no topic has role tokens"},
		{"an unknown role", full("role: tokens", "role: token"), `role "token" is none of the pipeline's`},
		{"a role twice", full("role: tokens", "role: raw"), "role raw is t.raw's already"},
		{"no name", full("name: t.tokens", "name: ''"), `a topic with role "tokens" has no name`},
		{"not YAML", "topics: [", "topics"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := topicsFromLayout([]byte(c.layout))
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Tokens != "t.tokens" || got.RawDLQ != "t.raw-dlq" {
					t.Errorf("topicsFromLayout() = %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %v, want one containing %q", err, c.err)
			}
		})
	}
}
