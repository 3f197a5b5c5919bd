// Package redisconn opens the Redis connection the pipeline caches in.
package redisconn

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Open parses url (redis://[user:pass@]host:port/db) and returns a client.
// It does not dial; Ping tells whether Redis answers.
func Open(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse REDIS_URL: %w", err)
	}
	return redis.NewClient(opts), nil
}

// Ping checks that Redis answers.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
