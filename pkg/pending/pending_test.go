package pending_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
)

func TestIndex(t *testing.T) {
	ctx := context.Background()
	x := pending.New(redistest.Client(t))
	app := kafkatest.Prefix(t) + "app"
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

	steps := []struct {
		key, id string
		since   time.Time
		added   bool
	}{
		{"k1", "e1", t0.Add(time.Hour), true},
		{"k1", "e2", t0, true},
		{"k1", "e1", t0.Add(time.Hour), false}, // a replayed record
		{"k2", "e3", t0.Add(2 * time.Hour), true},
	}
	for _, s := range steps {
		added, err := x.Add(ctx, app, s.key, pending.Entry{EventID: s.id, Since: s.since, Value: []byte("v-" + s.id)})
		if err != nil || added != s.added {
			t.Fatalf("Add(%s, %s) = %v, %v; want %v", s.key, s.id, added, err, s.added)
		}
	}
	got, err := x.Get(ctx, app, "k1")
	if err != nil || len(got) != 2 {
		t.Fatalf("Get = %v, %v", got, err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].EventID < got[j].EventID })
	if got[0].EventID != "e1" || string(got[0].Value) != "v-e1" || !got[0].Since.Equal(t0.Add(time.Hour)) {
		t.Errorf("entry %+v", got[0])
	}
	has, err := x.Has(ctx, app, []string{"k1", "k2", "k3"})
	if err != nil || !has["k1"] || !has["k2"] || has["k3"] {
		t.Fatalf("Has = %v, %v", has, err)
	}
	// The address's score is its oldest entry.
	var members []pending.Member
	if err := x.Each(ctx, app, 1, func(ms []pending.Member) (bool, error) {
		members = append(members, ms...)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].EmailKey < members[j].EmailKey })
	if len(members) != 2 || !members[0].Oldest.Equal(t0) || !members[1].Oldest.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("Each = %+v", members)
	}
	// Removal reports only what was there, once.
	gone, err := x.Remove(ctx, app, "k1", "e1", "e9")
	if err != nil || len(gone) != 1 || string(gone[0].Value) != "v-e1" {
		t.Fatalf("Remove = %+v, %v", gone, err)
	}
	if gone, _ := x.Remove(ctx, app, "k1", "e1"); len(gone) != 0 {
		t.Fatalf("second Remove = %+v", gone)
	}
	if _, err := x.Remove(ctx, app, "k1", "e2"); err != nil {
		t.Fatal(err)
	}
	if n, err := x.Count(ctx, app); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v; want 1 (k1 gone with its last entry)", n, err)
	}
}
