// Package exactlyonce checks the pipeline's promise: every accepted input
// event is, at the end, in Heap exactly once by idempotency key, or in a
// dead-letter topic with a reason. The fault suites in this package's tests
// use it; it reads only what a user could see (Heap, the topics).
package exactlyonce

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Input is one accepted payload unit.
type Input struct {
	Source string
	Kind   string
	Raw    []byte
}

// Expected maps inputs to the events they must produce, by event id.
func Expected(sources *source.Sources, inputs []Input) (map[string]events.Event, error) {
	out := map[string]events.Event{}
	for i, in := range inputs {
		src, ok := sources.Get(in.Source)
		if !ok {
			return nil, fmt.Errorf("input %d: unknown source %s", i, in.Source)
		}
		res, err := mapping.Map(src, in.Kind, in.Raw, events.Lineage{})
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		for _, e := range res.Events {
			out[e.ID] = e
		}
	}
	return out, nil
}

// Delivered is one event Heap kept, as the stand-in received it.
type Delivered struct {
	AppID string
	heaptest.Event
}

// DeadLetter is one event in a dead-letter topic.
type DeadLetter struct {
	EventID string
	Reason  string
}

// Report is what the checker saw.
type Report struct {
	Expected     int
	Delivered    int
	DeadLettered int
	Missing      []string // expected, neither delivered nor dead-lettered
	Unexpected   []string // delivered, never expected
	Twice        []string // one event under two keys, or kept twice
	NoReason     []string // dead letters without a reason
}

// OK reports whether the invariant holds.
func (r Report) OK() bool {
	return len(r.Missing) == 0 && len(r.Unexpected) == 0 && len(r.Twice) == 0 && len(r.NoReason) == 0
}

func (r Report) String() string {
	s := fmt.Sprintf("expected %d, delivered %d, dead-lettered %d", r.Expected, r.Delivered, r.DeadLettered)
	for _, p := range []struct {
		name string
		ids  []string
	}{{"missing", r.Missing}, {"unexpected", r.Unexpected}, {"twice", r.Twice}, {"without reason", r.NoReason}} {
		if len(p.ids) > 0 {
			shown := p.ids
			if len(shown) > 5 {
				shown = shown[:5]
			}
			s += fmt.Sprintf("; %d %s (%s)", len(p.ids), p.name, strings.Join(shown, ", "))
		}
	}
	return s
}

// Check compares what Heap kept and what was dead-lettered with expected.
func Check(expected map[string]events.Event, delivered []Delivered, dead []DeadLetter) Report {
	r := Report{Expected: len(expected)}
	kept := map[string]int{}
	byContent := map[string]string{}
	for _, d := range delivered {
		kept[d.IdempotencyKey]++
		if _, ok := expected[d.IdempotencyKey]; !ok {
			r.Unexpected = append(r.Unexpected, d.IdempotencyKey)
		}
		// The same event content under a second key is a double in Heap.
		c := d.AppID + "|" + d.Identity + "|" + d.Event.Event + "|" + d.Timestamp + "|" + fmt.Sprint(d.Properties["URL"]) + "|" + fmt.Sprint(d.Properties["Campaign ID"])
		if prev, ok := byContent[c]; ok && prev != d.IdempotencyKey {
			r.Twice = append(r.Twice, d.IdempotencyKey)
		}
		byContent[c] = d.IdempotencyKey
	}
	for id, n := range kept {
		if n > 1 {
			r.Twice = append(r.Twice, id)
		}
	}
	deadIDs := map[string]bool{}
	for _, d := range dead {
		deadIDs[d.EventID] = true
		if d.Reason == "" {
			r.NoReason = append(r.NoReason, d.EventID)
		}
	}
	for id := range expected {
		switch {
		case kept[id] > 0:
			r.Delivered++
		case deadIDs[id]:
			r.DeadLettered++
		default:
			r.Missing = append(r.Missing, id)
		}
	}
	for _, l := range [][]string{r.Missing, r.Unexpected, r.Twice, r.NoReason} {
		sort.Strings(l)
	}
	return r
}
