package materializer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/route"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/materializer"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/pending"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRebuild: what the compacted topics hold comes back after Redis lost
// everything: every identity (aliases resolved), campaign and pending event,
// and only the latest value of a key.
func TestRebuild(t *testing.T) {
	ctx := context.Background()
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 3)
	app := kafkatest.Prefix(t) + "app"
	srcs, err := source.New(source.Source{ID: "acme", HeapAppID: app, EmailProperty: "email"})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 2000
	now := time.Now()
	var recs []*kgo.Record
	for i := range n {
		r, _ := identity.Bind("acme", app, fmt.Sprintf("User%d@Example.com", i), fmt.Sprintf("id-%d", i), now).Record(topics.Identities)
		recs = append(recs, r)
	}
	// A later value wins; an alias follows its old address.
	r, _ := identity.Bind("acme", app, "user0@example.com", "id-0-new", now).Record(topics.Identities)
	recs = append(recs, r)
	r, _ = identity.Alias("acme", app, "user1@example.com", "moved@example.com", now).Record(topics.Identities)
	recs = append(recs, r)
	r, _ = campaigns.Record(topics.Campaigns, "acme", campaigns.Meta{ID: "c1", Title: "October"})
	recs = append(recs, r)
	// Two pending events; one was released (tombstoned) since.
	for i, email := range []string{"waiting@example.com", "released@example.com"} {
		e := events.Event{ID: fmt.Sprintf("e%d", i), SourceID: "acme", AppID: app, EmailKey: events.EmailKey(email),
			Name: events.NameOpen, Time: now.UTC().Truncate(time.Millisecond)}
		recs = append(recs, route.Record(topics, codec, e))
		if i == 1 {
			recs = append(recs, &kgo.Record{Topic: topics.Pending, Key: e.PendingKey()})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rdb := redistest.PrivateClient(t)
	m, err := materializer.New(materializer.Config{
		Brokers: brokers, Topics: topics, TransactionID: kafkatest.Prefix(t) + "mat", Holder: "t",
		Sources: srcs, Codec: codec, Redis: rdb, Log: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ready := materializer.CacheReady(rdb, topics)
	if ok, err := ready(ctx); err != nil || ok {
		t.Fatalf("CacheReady before rebuild = %v, %v", ok, err)
	}
	if err := m.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := ready(ctx); err != nil || !ok {
		t.Fatalf("CacheReady after rebuild = %v, %v", ok, err)
	}

	keys := make([]string, n)
	for i := range n {
		keys[i] = events.EmailKey(fmt.Sprintf("user%d@example.com", i))
	}
	keys = append(keys, events.EmailKey("moved@example.com"))
	got, err := identity.NewStore(rdb).Resolve(ctx, app, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 {
		t.Fatalf("%d identities after rebuild, want %d", len(got), n+1)
	}
	for i := 2; i < n; i++ {
		if want := fmt.Sprintf("id-%d", i); got[keys[i]] != want {
			t.Fatalf("identity %d = %q, want %q", i, got[keys[i]], want)
		}
	}
	if got[keys[0]] != "id-0-new" || got[keys[n]] != "id-1" {
		t.Errorf("latest value %q (want id-0-new), alias %q (want id-1)", got[keys[0]], got[keys[n]])
	}
	titles, err := campaigns.NewStore(rdb).Titles(ctx, "acme", []string{"c1"})
	if err != nil || titles["c1"] != "October" {
		t.Errorf("campaign titles %v, %v", titles, err)
	}
	idx := pending.New(rdb)
	waiting, _ := idx.Get(ctx, app, events.EmailKey("waiting@example.com"))
	released, _ := idx.Get(ctx, app, events.EmailKey("released@example.com"))
	if len(waiting) != 1 || len(released) != 0 {
		t.Errorf("pending after rebuild: waiting %d (want 1), released %d (want 0)", len(waiting), len(released))
	}
}
