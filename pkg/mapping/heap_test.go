package mapping_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
)

func TestAppendHeapProperties(t *testing.T) {
	const ts = "2026-10-02T15:02:11.000Z"
	long := strings.Repeat("é", 3000)
	cut := strings.Repeat("é", heap.MaxValueLen)
	// props are key, value pairs.
	props := func(kv ...string) []heap.Property {
		var ps []heap.Property
		for i := 0; i < len(kv); i += 2 {
			ps = append(ps, heap.Property{Key: kv[i], Value: kv[i+1]})
		}
		return ps
	}
	cases := []struct {
		name string
		e    events.Event
		want []heap.Property
	}{
		{"a click", events.Event{Name: events.NameClick, CampaignID: "c1", CampaignTitle: "October", ListID: "l1",
			IP: "192.0.2.44", URL: "https://x.example/?a=1&b=2"},
			props("Campaign ID", "c1", "Campaign Title", "October", "IP", "192.0.2.44", "List ID", "l1",
				"Time", ts, "URL", "https://x.example/?a=1&b=2")},
		{"every property, in key order", events.Event{BounceType: "hard", CampaignID: "c1", CampaignTitle: "T",
			IP: "192.0.2.1", ListID: "l1", Subject: "Hi", Tags: []string{"a", "b"}, URL: "https://u.example/"},
			props("Bounce Type", "hard", "Campaign ID", "c1", "Campaign Title", "T", "IP", "192.0.2.1",
				"List ID", "l1", "Subject", "Hi", "Tags", "a,b", "Time", ts, "URL", "https://u.example/")},
		{"empty values left out", events.Event{CampaignID: "c1"}, props("Campaign ID", "c1", "Time", ts)},
		{"one tag", events.Event{Tags: []string{"vip"}}, props("Tags", "vip", "Time", ts)},
		{"long values cut under Heap's limit, on a rune", events.Event{CampaignTitle: long, Subject: long},
			props("Campaign Title", cut, "Subject", cut, "Time", ts)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := mapping.AppendHeapProperties(nil, c.e, ts)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !slices.IsSortedFunc(got, func(a, b heap.Property) int { return strings.Compare(a.Key, b.Key) }) {
				t.Errorf("not in key order: %v", got)
			}
			if len(got) > mapping.HeapProperties {
				t.Errorf("%d properties, more than HeapProperties (%d)", len(got), mapping.HeapProperties)
			}
			// Appended after what dst holds.
			pre := props("A", "a")
			if got := mapping.AppendHeapProperties(pre, c.e, ts); !slices.Equal(got[1:], c.want) || got[0] != pre[0] {
				t.Errorf("appended to %v: %v", pre, got)
			}
		})
	}
}

// TestAppendHeapPropertiesReuses: with room in dst, the properties of an
// event of one tag or none take no allocation.
func TestAppendHeapPropertiesReuses(t *testing.T) {
	e := events.Event{Name: events.NameOpen, Time: time.Now(), CampaignID: "c1", CampaignTitle: "October",
		ListID: "l1", IP: "192.0.2.44", Subject: "Hello", Tags: []string{"vip"}, URL: "https://x.example/"}
	dst := make([]heap.Property, 0, mapping.HeapProperties)
	if n := testing.AllocsPerRun(100, func() {
		dst = mapping.AppendHeapProperties(dst[:0], e, "2026-10-02T15:02:11.000Z")
	}); n != 0 {
		t.Errorf("%v allocations per event", n)
	}
}
