// Package identity resolves email addresses to Heap identities through the
// Redis cache, for sources whose email join key is a custom user property.
package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Store maps (app, email key) to identity under mh:identity:{app}:{email key}.
// The email key is events.EmailKey: the address itself never reaches Redis.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

func key(app, emailKey string) string { return "mh:identity:" + app + ":" + emailKey }

// mgetChunk is how many keys one MGET asks for.
const mgetChunk = 512

// Resolve returns the identities known for emailKeys, in one pipeline of
// MGETs (on a cluster client, of GETs: its keys span slots). A missing key
// is absent from the map; an error means Redis did not answer.
func (s *Store) Resolve(ctx context.Context, app string, emailKeys []string) (map[string]string, error) {
	out := make(map[string]string, len(emailKeys))
	if len(emailKeys) == 0 {
		return out, nil
	}
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		return s.resolveEach(ctx, app, emailKeys, out)
	}
	// One MGET a chunk rather than a GET a key: per-command work in the
	// client and the server dominates a batch's lookups. MGET answers nil for a missing key and for
	// a key of another type, where GET answered nil or an error: absent
	// either way.
	cmds := make([]*redis.SliceCmd, 0, (len(emailKeys)+mgetChunk-1)/mgetChunk)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		keys := make([]string, len(emailKeys))
		for i, k := range emailKeys {
			keys[i] = key(app, k)
		}
		for lo := 0; lo < len(keys); lo += mgetChunk {
			cmds = append(cmds, p.MGet(ctx, keys[lo:min(lo+mgetChunk, len(keys))]...))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("identity: resolve: %w", err)
	}
	for c, cmd := range cmds {
		vals, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("identity: resolve: %w", err)
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				out[emailKeys[c*mgetChunk+i]] = s
			}
		}
	}
	return out, nil
}

func (s *Store) resolveEach(ctx context.Context, app string, emailKeys []string, out map[string]string) (map[string]string, error) {
	cmds := make([]*redis.StringCmd, len(emailKeys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range emailKeys {
			cmds[i] = p.Get(ctx, key(app, k))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("identity: resolve: %w", err)
	}
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			out[emailKeys[i]] = v
		}
	}
	return out, nil
}

// Put records that emailKey belongs to identity in app.
func (s *Store) Put(ctx context.Context, app, emailKey, ident string) error {
	if err := s.rdb.Set(ctx, key(app, emailKey), ident, 0).Err(); err != nil {
		return fmt.Errorf("identity: put: %w", err)
	}
	return nil
}

// PutMany records several mappings of app in one pipeline.
func (s *Store) PutMany(ctx context.Context, app string, idents map[string]string) error {
	if len(idents) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, v := range idents {
			p.Set(ctx, key(app, k), v, 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("identity: put: %w", err)
	}
	return nil
}

// PutManyIfAbsent records mappings of app whose address has none yet: a
// rebuild writes what it read a while ago, and must not overwrite a newer
// mapping the live consumer applied meanwhile.
func (s *Store) PutManyIfAbsent(ctx context.Context, app string, idents map[string]string) error {
	if len(idents) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, v := range idents {
			p.SetNX(ctx, key(app, k), v, 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("identity: put: %w", err)
	}
	return nil
}

func aliasKey(app, emailKey string) string { return "mh:identity-alias:" + app + ":" + emailKey }

// AddAlias remembers that newKey inherits oldKey's identity once it is known.
func (s *Store) AddAlias(ctx context.Context, app, oldKey, newKey string) error {
	if err := s.rdb.SAdd(ctx, aliasKey(app, oldKey), newKey).Err(); err != nil {
		return fmt.Errorf("identity: alias: %w", err)
	}
	return nil
}

// Aliases returns the addresses waiting to inherit oldKey's identity.
func (s *Store) Aliases(ctx context.Context, app, oldKey string) ([]string, error) {
	v, err := s.rdb.SMembers(ctx, aliasKey(app, oldKey)).Result()
	if err != nil {
		return nil, fmt.Errorf("identity: aliases: %w", err)
	}
	return v, nil
}
