// Package status records what a user should see of a source beyond its
// events: its connection state and the campaigns it skips, and why.
package status

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Store keeps source status in Redis.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// SetState records a source state (e.g. reconnect_needed) and its reason.
func (s *Store) SetState(ctx context.Context, source, state, reason string) error {
	if err := s.rdb.HSet(ctx, "mh:source:"+source, "state", state, "reason", reason).Err(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// State returns the recorded state and reason ("" when none).
func (s *Store) State(ctx context.Context, source string) (state, reason string, err error) {
	v, err := s.rdb.HMGet(ctx, "mh:source:"+source, "state", "reason").Result()
	if err != nil {
		return "", "", fmt.Errorf("status: %w", err)
	}
	state, _ = v[0].(string)
	reason, _ = v[1].(string)
	return state, reason, nil
}

// Skipped records a campaign the source does not poll, with the reason.
func (s *Store) Skipped(ctx context.Context, source, campaignID, reason string) error {
	if err := s.rdb.HSet(ctx, "mh:source:"+source+":skipped", campaignID, reason).Err(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// SkippedCampaigns returns the skipped campaigns and their reasons.
func (s *Store) SkippedCampaigns(ctx context.Context, source string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, "mh:source:"+source+":skipped").Result()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return m, nil
}
