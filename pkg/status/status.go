// Package status records what a user should see of a source beyond its
// events: its connection state, the campaigns it skips and why, and counters
// of what was delivered, is pending or was dead-lettered.
//
// Every method but Once is a no-op on a nil *Store, so wiring it stays
// optional; Once fails closed instead.
package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// StateReconnectNeeded is recorded when Mailchimp refuses the source's token.
const StateReconnectNeeded = "reconnect_needed"

// Dead-letter reasons counted per source. The match rate counts
// ReasonUnmatched as events that never found their Heap user.
const (
	ReasonHeapRejected    = "heap_rejected"
	ReasonUnmatched       = "unmatched"
	ReasonIdentityTooLong = "identity_too_long"
	ReasonUnparseable     = "unparseable"
)

// Store keeps source status in Redis.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Keys: one hash for state, times and pending; one hash per counter family.
func key(source string) string          { return "mh:source:" + source }
func skippedKey(source string) string   { return key(source) + ":skipped" }
func deliveredKey(source string) string { return key(source) + ":delivered" }
func deadKey(source string) string      { return key(source) + ":dead" }

const (
	fieldState   = "state"
	fieldReason  = "reason"
	fieldFirst   = "first_event_at"
	fieldLast    = "last_event_at"
	fieldPending = "pending"
)

// SetState records a source state (e.g. reconnect_needed) and its reason.
func (s *Store) SetState(ctx context.Context, source, state, reason string) error {
	if s == nil {
		return nil
	}
	if err := s.rdb.HSet(ctx, key(source), fieldState, state, fieldReason, reason).Err(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// State returns the recorded state and reason ("" when none).
func (s *Store) State(ctx context.Context, source string) (state, reason string, err error) {
	if s == nil {
		return "", "", nil
	}
	v, err := s.rdb.HMGet(ctx, key(source), fieldState, fieldReason).Result()
	if err != nil {
		return "", "", fmt.Errorf("status: %w", err)
	}
	state, _ = v[0].(string)
	reason, _ = v[1].(string)
	return state, reason, nil
}

// Skipped records a campaign the source does not poll, with the reason.
func (s *Store) Skipped(ctx context.Context, source, campaignID, reason string) error {
	if s == nil {
		return nil
	}
	if err := s.rdb.HSet(ctx, skippedKey(source), campaignID, reason).Err(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// SkippedCampaigns returns the skipped campaigns and their reasons.
func (s *Store) SkippedCampaigns(ctx context.Context, source string) (map[string]string, error) {
	if s == nil {
		return map[string]string{}, nil
	}
	m, err := s.rdb.HGetAll(ctx, skippedKey(source)).Result()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return m, nil
}

// Delivered counts events Heap accepted, by Heap event name ("Open Email"),
// and records the first (once) and the last delivery time.
func (s *Store) Delivered(ctx context.Context, source string, counts map[string]int, at time.Time) error {
	if s == nil {
		return nil
	}
	total := 0
	for _, n := range counts {
		total += max(n, 0)
	}
	if total == 0 {
		return nil
	}
	ts := at.UTC().Format(time.RFC3339Nano)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for name, n := range counts {
			if n > 0 {
				p.HIncrBy(ctx, deliveredKey(source), name, int64(n))
			}
		}
		p.HSetNX(ctx, key(source), fieldFirst, ts)
		p.HSet(ctx, key(source), fieldLast, ts)
		return nil
	})
	if err != nil {
		return fmt.Errorf("status: delivered %s: %w", source, err)
	}
	return nil
}

// DeadLettered counts n events of the source dead-lettered for reason, a
// short class such as ReasonHeapRejected.
func (s *Store) DeadLettered(ctx context.Context, source, reason string, n int) error {
	if s == nil || n <= 0 {
		return nil
	}
	if err := s.rdb.HIncrBy(ctx, deadKey(source), reason, int64(n)).Err(); err != nil {
		return fmt.Errorf("status: dead-lettered %s: %w", source, err)
	}
	return nil
}

// AddPending moves the count of events waiting for an identity by delta.
func (s *Store) AddPending(ctx context.Context, source string, delta int64) error {
	if s == nil || delta == 0 {
		return nil
	}
	if err := s.rdb.HIncrBy(ctx, key(source), fieldPending, delta).Err(); err != nil {
		return fmt.Errorf("status: pending %s: %w", source, err)
	}
	return nil
}

func onceKey(key string) string { return "mh:once:" + key }

// Once records key for ttl and reports whether this call was the first to
// do so (SET NX PX): what it guards (an OAuth state) is used once. On a nil
// Store, a non-positive ttl or a Redis error it answers an error, never
// first, so a caller refuses rather than accepting a replay.
func (s *Store) Once(ctx context.Context, key string, ttl time.Duration) (first bool, err error) {
	if s == nil {
		return false, errors.New("status: once: no store")
	}
	if ttl <= 0 {
		return false, fmt.Errorf("status: once: ttl %s must be positive", ttl)
	}
	first, err = s.rdb.SetNX(ctx, onceKey(key), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("status: once: %w", err)
	}
	return first, nil
}

// Report is everything recorded about a source.
type Report struct {
	State        string            `json:"state,omitempty"` // as recorded: "", "connected", reconnect_needed
	Reason       string            `json:"reason,omitempty"`
	FirstEventAt *time.Time        `json:"first_event_at,omitempty"`
	LastEventAt  *time.Time        `json:"last_event_at,omitempty"`
	Delivered    map[string]int64  `json:"delivered"`     // by Heap event name
	Pending      int64             `json:"pending"`       // waiting for an identity
	DeadLettered map[string]int64  `json:"dead_lettered"` // by reason
	MatchRate    *float64          `json:"match_rate,omitempty"`
	Skipped      map[string]string `json:"skipped_campaigns"` // campaign id -> reason
}

// DeliveredTotal is the number of events Heap accepted.
func (r Report) DeliveredTotal() int64 {
	var n int64
	for _, v := range r.Delivered {
		n += v
	}
	return n
}

// matchRate is delivered / (delivered + pending + unmatched dead letters);
// nil while there is nothing to divide.
func matchRate(delivered, pending, unmatched int64) *float64 {
	d := delivered + max(pending, 0) + unmatched
	if d <= 0 {
		return nil
	}
	r := float64(delivered) / float64(d)
	return &r
}

// Report reads a source's status in one round trip.
func (s *Store) Report(ctx context.Context, source string) (Report, error) {
	r := Report{Delivered: map[string]int64{}, DeadLettered: map[string]int64{}, Skipped: map[string]string{}}
	if s == nil {
		return r, nil
	}
	var main, delivered, dead, skipped *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		main = p.HGetAll(ctx, key(source))
		delivered = p.HGetAll(ctx, deliveredKey(source))
		dead = p.HGetAll(ctx, deadKey(source))
		skipped = p.HGetAll(ctx, skippedKey(source))
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("status: report %s: %w", source, err)
	}
	m := main.Val()
	r.State, r.Reason = m[fieldState], m[fieldReason]
	r.FirstEventAt, r.LastEventAt = parseTime(m[fieldFirst]), parseTime(m[fieldLast])
	r.Pending = max(parseInt(m[fieldPending]), 0)
	for k, v := range delivered.Val() {
		r.Delivered[k] = parseInt(v)
	}
	for k, v := range dead.Val() {
		r.DeadLettered[k] = parseInt(v)
	}
	for k, v := range skipped.Val() {
		r.Skipped[k] = v
	}
	r.MatchRate = matchRate(r.DeliveredTotal(), r.Pending, r.DeadLettered[ReasonUnmatched])
	return r, nil
}

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func parseTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return &t
}
