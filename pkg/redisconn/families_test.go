package redisconn_test

// Every key family of the pipeline, its multi-key commands, pipelines and
// scripts, on whatever Redis the environment names: CI runs this on a real
// 3-master Cluster, on Sentinel and on a TLS-only server as well as on a
// single redis-server.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/lease"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/ledger"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pacing"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
)

func unique(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return strings.ReplaceAll(t.Name(), "/", "_") + "-" + hex.EncodeToString(b)
}

func TestKeyFamilies(t *testing.T) {
	rdb := redistest.Client(t)
	t.Logf("redis: %s", redistest.Mode(t))
	ctx := context.Background()
	if err := redisconn.Ping(ctx, rdb); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	app := unique(t)

	t.Run("identity", func(t *testing.T) {
		ids := identity.NewStore(rdb)
		want := map[string]string{}
		var keys []string
		for i := range 600 { // more than one MGET chunk, keys on every slot range
			k := fmt.Sprintf("key-%d", i)
			keys = append(keys, k)
			if i%2 == 0 {
				want[k] = fmt.Sprintf("user-%d", i)
			}
		}
		if err := ids.PutMany(ctx, app, want); err != nil {
			t.Fatal(err)
		}
		if err := ids.PutManyIfAbsent(ctx, app, map[string]string{"key-0": "other", "key-1": "user-1"}); err != nil {
			t.Fatal(err)
		}
		want["key-1"] = "user-1"
		got, err := ids.Resolve(ctx, app, keys)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if len(got) != len(want) || got["key-0"] != "user-0" || got["key-1"] != "user-1" {
			t.Fatalf("Resolve: %d identities (want %d), key-0=%q key-1=%q", len(got), len(want), got["key-0"], got["key-1"])
		}
		if err := ids.AddAlias(ctx, app, "old", "new"); err != nil {
			t.Fatal(err)
		}
		if a, err := ids.Aliases(ctx, app, "old"); err != nil || !slices.Equal(a, []string{"new"}) {
			t.Fatalf("Aliases: %v %v", a, err)
		}
	})
	t.Run("campaigns", func(t *testing.T) {
		cs := campaigns.NewStore(rdb)
		var metas []campaigns.Meta
		var idsList []string
		for i := range 50 {
			id := fmt.Sprintf("c%d", i)
			metas = append(metas, campaigns.Meta{ID: id, Title: "Title " + id})
			idsList = append(idsList, id)
		}
		if err := cs.Remember(ctx, app, metas); err != nil {
			t.Fatal(err)
		}
		titles, err := cs.Titles(ctx, app, idsList)
		if err != nil || len(titles) != 50 || titles["c7"] != "Title c7" {
			t.Fatalf("Titles: %d %v", len(titles), err)
		}
	})
	t.Run("pending", func(t *testing.T) {
		idx := pending.New(rdb)
		since := time.Now().Truncate(time.Millisecond)
		for i := range 20 {
			if _, err := idx.Add(ctx, app, fmt.Sprintf("e%d", i%5), pending.Entry{EventID: fmt.Sprintf("ev%d", i), Since: since, Value: []byte("v")}); err != nil {
				t.Fatalf("Add (a two-key script): %v", err)
			}
		}
		has, err := idx.Has(ctx, app, []string{"e0", "e4", "nope"})
		if err != nil || !has["e0"] || !has["e4"] || has["nope"] {
			t.Fatalf("Has: %v %v", has, err)
		}
		removed, err := idx.Remove(ctx, app, "e0", "ev0", "ev5")
		if err != nil || len(removed) != 2 {
			t.Fatalf("Remove (a two-key script): %d %v", len(removed), err)
		}
		if n, err := idx.Count(ctx, app); err != nil || n != 5 {
			t.Fatalf("Count: %d %v", n, err)
		}
	})
	t.Run("ledger", func(t *testing.T) {
		l := ledger.NewStore(rdb, time.Hour)
		var keys []ledger.Key
		for i := range 100 {
			keys = append(keys, ledger.Key{ID: fmt.Sprintf("%032x", i), Time: time.Now().Add(-time.Duration(i) * time.Hour)})
		}
		if err := l.Record(ctx, app, keys[:50]); err != nil {
			t.Fatal(err)
		}
		got, err := l.Delivered(ctx, app, keys)
		if err != nil || len(got) != 50 {
			t.Fatalf("Delivered: %d %v", len(got), err)
		}
	})
	t.Run("pacing", func(t *testing.T) {
		p := pacing.NewApps(rdb)
		if _, err := p.Reserve(ctx, app, 6000, 10); err != nil {
			t.Fatalf("Reserve (a script): %v", err)
		}
	})
	t.Run("lease", func(t *testing.T) {
		a, b := lease.New(rdb, "a"), lease.New(rdb, "b")
		if own, err := a.Own(ctx, app, time.Minute); err != nil || !own {
			t.Fatalf("a.Own: %v %v", own, err)
		}
		if own, err := b.Own(ctx, app, time.Minute); err != nil || own {
			t.Fatalf("b.Own while a holds it: %v %v", own, err)
		}
	})
	t.Run("status", func(t *testing.T) {
		s := status.NewStore(rdb)
		if err := s.SetState(ctx, app, "ok", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.Delivered(ctx, app, map[string]int{"Email Opened": 3}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.DeadLettered(ctx, app, "bad", 1); err != nil {
			t.Fatal(err)
		}
		r, err := s.Report(ctx, app)
		if err != nil || r.DeliveredTotal() != 3 {
			t.Fatalf("Report (a pipeline over four keys): %+v %v", r, err)
		}
	})
}

// TestPingRefusesAClusterNodeAsAServer: REDIS_URL at one node of a Cluster
// without REDIS_CLUSTER_ADDRS answers MOVED for most keys; readiness says so.
func TestPingRefusesAClusterNodeAsAServer(t *testing.T) {
	o := redistest.Options(t)
	if o.Mode() != "cluster" {
		t.Skip("needs a Redis Cluster (REDIS_CLUSTER_ADDRS); CI runs it on one")
	}
	plain, err := redisconn.Open("redis://"+o.ClusterAddrs[0], redisconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	err = redisconn.Ping(context.Background(), plain)
	if err == nil || !strings.Contains(err.Error(), "REDIS_CLUSTER_ADDRS") {
		t.Fatalf("Ping of a plain client on a cluster node: %v", err)
	}
	t.Log(err)
	var _ redis.UniversalClient = plain
}
