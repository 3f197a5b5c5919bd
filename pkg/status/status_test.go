package status_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// sourceID is unique per call: tests may share one Redis (REDIS_URL).
func sourceID(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "st-" + hex.EncodeToString(b)
}

func ptr[T any](v T) *T { return &v }

func TestReport(t *testing.T) {
	t0 := time.Date(2026, 10, 2, 14, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	tests := []struct {
		name string
		do   func(ctx context.Context, s *status.Store, src string) error
		want status.Report
	}{
		{
			name: "nothing recorded",
			do:   func(context.Context, *status.Store, string) error { return nil },
			want: status.Report{},
		},
		{
			name: "deliveries keep the first time and move the last",
			do: func(ctx context.Context, s *status.Store, src string) error {
				if err := s.Delivered(ctx, src, map[string]int{"Open Email": 2, "Bounce Email": 1}, t0); err != nil {
					return err
				}
				if err := s.Delivered(ctx, src, map[string]int{"Open Email": 1, "Click Email Link": 0}, t1); err != nil {
					return err
				}
				return s.Delivered(ctx, src, map[string]int{}, t1.Add(time.Hour)) // nothing: no time moves
			},
			want: status.Report{
				FirstEventAt: ptr(t0), LastEventAt: ptr(t1),
				Delivered: map[string]int64{"Open Email": 3, "Bounce Email": 1},
				MatchRate: ptr(1.0),
			},
		},
		{
			name: "match rate counts pending and unmatched, not other dead letters",
			do: func(ctx context.Context, s *status.Store, src string) error {
				for _, err := range []error{
					s.Delivered(ctx, src, map[string]int{"Open Email": 6}, t0),
					s.AddPending(ctx, src, 5),
					s.AddPending(ctx, src, -2),
					s.DeadLettered(ctx, src, status.ReasonUnmatched, 1),
					s.DeadLettered(ctx, src, status.ReasonHeapRejected, 4),
					s.DeadLettered(ctx, src, status.ReasonHeapRejected, 0),
				} {
					if err != nil {
						return err
					}
				}
				return nil
			},
			want: status.Report{
				FirstEventAt: ptr(t0), LastEventAt: ptr(t0),
				Delivered:    map[string]int64{"Open Email": 6},
				Pending:      3,
				DeadLettered: map[string]int64{"unmatched": 1, "heap_rejected": 4},
				MatchRate:    ptr(0.6),
			},
		},
		{
			name: "only pending: rate 0; pending never shows below 0",
			do: func(ctx context.Context, s *status.Store, src string) error {
				if err := s.AddPending(ctx, src, -3); err != nil {
					return err
				}
				return s.DeadLettered(ctx, src, status.ReasonUnmatched, 2)
			},
			want: status.Report{DeadLettered: map[string]int64{"unmatched": 2}, MatchRate: ptr(0.0)},
		},
		{
			name: "state and skipped campaigns",
			do: func(ctx context.Context, s *status.Store, src string) error {
				if err := s.SetState(ctx, src, status.StateReconnectNeeded, "invalid_token"); err != nil {
					return err
				}
				return s.Skipped(ctx, src, "c1", "variate campaigns are not exposed")
			},
			want: status.Report{State: "reconnect_needed", Reason: "invalid_token",
				Skipped: map[string]string{"c1": "variate campaigns are not exposed"}},
		},
	}
	rdb := redistest.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, src := status.NewStore(rdb), sourceID(t)
			if err := tt.do(ctx, s, src); err != nil {
				t.Fatal(err)
			}
			got, err := s.Report(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			for _, m := range []*map[string]int64{&want.Delivered, &want.DeadLettered} {
				if *m == nil {
					*m = map[string]int64{}
				}
			}
			if want.Skipped == nil {
				want.Skipped = map[string]string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("report (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStateKeepsBehaviour(t *testing.T) {
	ctx := context.Background()
	s, src := status.NewStore(redistest.Client(t)), sourceID(t)
	if err := s.Delivered(ctx, src, map[string]int{"Open Email": 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, src, "connected", ""); err != nil {
		t.Fatal(err)
	}
	state, reason, err := s.State(ctx, src)
	if err != nil || state != "connected" || reason != "" {
		t.Fatalf("State = %q, %q, %v", state, reason, err)
	}
	skipped, err := s.SkippedCampaigns(ctx, src)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("SkippedCampaigns = %v, %v", skipped, err)
	}
}

func TestNilStore(t *testing.T) {
	ctx := context.Background()
	var s *status.Store
	for _, err := range []error{
		s.SetState(ctx, "a", "x", "y"),
		s.Skipped(ctx, "a", "c", "r"),
		s.Delivered(ctx, "a", map[string]int{"Open Email": 1}, time.Now()),
		s.DeadLettered(ctx, "a", status.ReasonUnmatched, 1),
		s.AddPending(ctx, "a", 1),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, _, err := s.State(ctx, "a"); st != "" || err != nil {
		t.Fatalf("State = %q, %v", st, err)
	}
	if r, err := s.Report(ctx, "a"); err != nil || r.DeliveredTotal() != 0 || r.MatchRate != nil {
		t.Fatalf("Report = %+v, %v", r, err)
	}
}

// TestOnce: only the first use of a key within its ttl is first; the key
// is free again once the ttl has passed; a nil store refuses.
func TestOnce(t *testing.T) {
	ctx := context.Background()
	s := status.NewStore(redistest.Client(t))
	key := "test:" + sourceID(t)
	tests := []struct {
		name      string
		key       string
		ttl       time.Duration
		wantFirst bool
		wantErr   bool
	}{
		{name: "first use", key: key, ttl: 300 * time.Millisecond, wantFirst: true},
		{name: "second use", key: key, ttl: time.Minute},
		{name: "another key", key: key + "-other", ttl: time.Minute, wantFirst: true},
		{name: "zero ttl refused", key: key + "-zero", ttl: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, err := s.Once(ctx, tt.key, tt.ttl)
			if (err != nil) != tt.wantErr || first != tt.wantFirst {
				t.Fatalf("Once(%q) = %v, %v; want first=%v err=%v", tt.key, first, err, tt.wantFirst, tt.wantErr)
			}
		})
	}
	testsupport.WaitFor(t, "the key to expire", 10*time.Second, func() bool {
		first, err := s.Once(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return first
	})
	var none *status.Store
	if first, err := none.Once(ctx, key, time.Minute); first || err == nil {
		t.Fatalf("nil store Once = %v, %v; want a refusal", first, err)
	}
}
