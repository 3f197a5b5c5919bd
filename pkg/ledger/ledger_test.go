package ledger_test

import (
	"context"
	"fmt"
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
