// Package campaigns caches Mailchimp campaign metadata (title, list, type)
// in Redis so every mapped event can carry its Campaign Title.
package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
)

// Meta is what the pipeline knows of a campaign: the mapping learns it
// from payloads, this package stores it.
type Meta = mapping.Campaign

// Store keeps Meta under mh:campaign:{source}:{id}.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

func key(source, id string) string { return "mh:campaign:" + source + ":" + id }

// Remember stores metas in one pipeline. Writes are idempotent, so a replayed
// transaction rewrites the same values.
func (s *Store) Remember(ctx context.Context, source string, metas []Meta) error {
	if len(metas) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range metas {
			k := key(source, m.ID)
			if m.Fallback {
				if m.Title != "" {
					p.HSetNX(ctx, k, "title", m.Title)
				}
			} else {
				p.HSet(ctx, k, "title", m.Title, "type", m.Type)
			}
			if m.ListID != "" {
				p.HSet(ctx, k, "list_id", m.ListID)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("campaigns: remember: %w", err)
	}
	return nil
}

// Titles returns the known titles of ids, in one pipeline.
func (s *Store) Titles(ctx context.Context, source string, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, key(source, id), "title")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("campaigns: titles: %w", err)
	}
	for i, c := range cmds {
		if v, err := c.Result(); err == nil && v != "" {
			out[ids[i]] = v
		}
	}
	return out, nil
}

// record is the value of mailchimp.campaigns.
type record struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	ListID   string `json:"list_id,omitempty"`
	Type     string `json:"type,omitempty"`
	Fallback bool   `json:"fallback,omitempty"` // title guessed from an audience webhook's subject
}

// Record is the mailchimp.campaigns record of m for source, keyed
// source/campaign so the compacted topic keeps the latest per campaign.
func Record(topic, source string, m Meta) (*kgo.Record, error) {
	v, err := json.Marshal(record(m))
	if err != nil {
		return nil, fmt.Errorf("campaigns: %w", err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(source + "/" + m.ID), Value: v}, nil
}

// Decode reads a mailchimp.campaigns record.
func Decode(key, value []byte) (source string, m Meta, err error) {
	source, _, ok := strings.Cut(string(key), "/")
	if !ok {
		return "", Meta{}, fmt.Errorf("campaigns: key %q has no source", key)
	}
	var r record
	if err := json.Unmarshal(value, &r); err != nil {
		return "", Meta{}, fmt.Errorf("campaigns: decode: %w", err)
	}
	return source, Meta(r), nil
}
