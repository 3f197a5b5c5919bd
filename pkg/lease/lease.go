// Package lease grants a named piece of work to one instance at a time
// through Redis, so that only one poller polls a Mailchimp account.
package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquire takes the lease when free, or renews it when held by this holder.
var acquire = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == false or v == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return 0`)

// Leases are held by one holder (an instance id).
type Leases struct {
	rdb    redis.UniversalClient
	holder string
}

// New returns leases held as holder.
func New(rdb redis.UniversalClient, holder string) *Leases { return &Leases{rdb: rdb, holder: holder} }

// Own acquires or renews name for ttl; false when another holder has it.
func (l *Leases) Own(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	n, err := acquire.Run(ctx, l.rdb, []string{"mh:lease:" + name}, l.holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return n == 1, nil
}
