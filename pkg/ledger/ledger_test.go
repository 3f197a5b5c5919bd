package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
)

func TestRecordThenDelivered(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.PrivateClient(t)
	s := ledger.NewStore(rdb, time.Hour)
	t0 := time.Date(2026, 10, 2, 14, 59, 0, 0, time.UTC)
	var keys []ledger.Key
	for i := range 1500 {
		// Three hours of event time, in no order; one event from before 1970.
		at := t0.Add(time.Duration(i%3) * time.Hour).Add(time.Duration(i) * time.Millisecond)
		if i == 7 {
			at = time.Time{}
		}
		keys = append(keys, ledger.Key{ID: fmt.Sprintf("%032x", i), Time: at})
	}
	if err := s.Record(ctx, "app1", keys[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "app1", nil); err != nil {
		t.Fatal(err)
	}
	seen, err := s.Delivered(ctx, "app1", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1000 || !seen[keys[0].ID] || !seen[keys[7].ID] || !seen[keys[999].ID] || seen[keys[1000].ID] {
		t.Errorf("Delivered: %d of 1500 seen, want the 1000 recorded", len(seen))
	}
	// An id is found in its own hour's set only; another app's ledger is its own.
	moved := []ledger.Key{{ID: keys[0].ID, Time: keys[0].Time.Add(-2 * time.Hour)}}
	if got, err := s.Delivered(ctx, "app1", moved); err != nil || len(got) != 0 {
		t.Errorf("Delivered in another hour = %v, %v; want none", got, err)
	}
	if other, err := s.Delivered(ctx, "app2", keys[:10]); err != nil || len(other) != 0 {
		t.Errorf("Delivered for app2 = %v, %v; want none", other, err)
	}
	// One set per hour of event time (the year-1 event's among them), each
	// living the ledger's TTL.
	sets, err := rdb.Keys(ctx, "mh:delivered:{app1}:*").Result()
	if err != nil || len(sets) != 4 {
		t.Fatalf("sets %v, %v; want 4", sets, err)
	}
	for _, k := range sets {
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("PTTL(%s) = %v, %v; want about an hour", k, ttl, err)
		}
	}
}

func TestFailsWithoutRedis(t *testing.T) {
	rdb := redistest.Client(t)
	s := ledger.NewStore(rdb, time.Hour)
	rdb.Close()
	k := []ledger.Key{{ID: "x", Time: time.Now()}}
	if err := s.Record(context.Background(), "app1", k); err == nil {
		t.Error("Record on a closed client: want an error")
	}
	if _, err := s.Delivered(context.Background(), "app1", k); err == nil {
		t.Error("Delivered on a closed client: want an error")
	}
}

// TestMembers: an id of 32 lowercase hex digits (every event id) is kept as
// its 16 bytes; any other id as itself, and each is found again by its own
// id only.
func TestMembers(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.PrivateClient(t)
	s := ledger.NewStore(rdb, time.Hour)
	at := time.Date(2026, 10, 2, 14, 0, 0, 0, time.UTC)
	hexID := "00ff10a0b1c2d3e4f5061728394a5b6c"
	tests := []struct {
		id, member string
	}{
		{hexID, "\x00\xff\x10\xa0\xb1\xc2\xd3\xe4\xf5\x06\x17\x28\x39\x4a\x5b\x6c"},
		{strings.ToUpper(hexID), strings.ToUpper(hexID)}, // not an event id's form: kept whole
		{"acme-17", "acme-17"},
		{hexID[:31] + "g", hexID[:31] + "g"},
		{hexID + "0", hexID + "0"},
	}
	for _, tt := range tests {
		k := []ledger.Key{{ID: tt.id, Time: at}}
		if err := s.Record(ctx, "members", k); err != nil {
			t.Fatal(err)
		}
		set := fmt.Sprintf("mh:delivered:{members}:h%d", at.Unix()/3600)
		if ok, err := rdb.SIsMember(ctx, set, tt.member).Result(); err != nil || !ok {
			t.Errorf("%q: member %q in %s = %v, %v; want true", tt.id, tt.member, set, ok, err)
		}
		if err := rdb.Del(ctx, set).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Recorded together, each is found by its own id and by no other.
	var all []ledger.Key
	for _, tt := range tests {
		all = append(all, ledger.Key{ID: tt.id, Time: at})
	}
	if err := s.Record(ctx, "members", all[:1]); err != nil {
		t.Fatal(err)
	}
	seen, err := s.Delivered(ctx, "members", all)
	if err != nil || len(seen) != 1 || !seen[hexID] {
		t.Errorf("Delivered = %v, %v; want only %s", seen, err, hexID)
	}
}
