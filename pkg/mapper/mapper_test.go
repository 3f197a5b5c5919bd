package mapper_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

func raw(topic, source, kind string, value []byte) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(source), Value: value, Headers: []kgo.RecordHeader{
		{Key: kafka.HeaderSource, Value: []byte(source)},
		{Key: kafka.HeaderKind, Value: []byte(kind)},
		{Key: kafka.HeaderReceivedAt, Value: []byte("2026-10-05T10:00:00.123456Z")},
		{Key: kafka.HeaderRequestID, Value: []byte("req")},
	}}
}

func mandrillUnits(t *testing.T) [][]byte {
	t.Helper()
	form, err := url.ParseQuery(string(fixtures.Read("mandrill/webhook.form")))
	if err != nil {
		t.Fatal(err)
	}
	units, err := mailchimp.SplitMandrillBatch(form.Get("mandrill_events"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(units))
	for i, u := range units {
		out[i] = u
	}
	return out
}

type got struct {
	name, identity, campaignTitle string
}

// TestMapper runs the transactional loop on a real Kafka protocol server and
// Redis: fixtures in, the expected events, pending and dead letters out.
func TestMapper(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 3)
	rdb := redistest.Client(t)
	prefix := kafkatest.Prefix(t)
	acme, custom := prefix+"acme", prefix+"custom"
	sources, err := source.New(
		source.Source{ID: "acme", HeapAppID: acme},
		source.Source{ID: "custom", HeapAppID: custom, EmailProperty: "user_id"},
		source.Source{ID: "preserve", HeapAppID: prefix + "preserve", EmailCase: "preserve"},
	)
	if err != nil {
		t.Fatal(err)
	}
	ids := identity.NewStore(rdb)
	ctx := context.Background()
	if err := ids.Put(ctx, custom, events.EmailKey("Jordan.Lee@example.com"), "User-42"); err != nil {
		t.Fatal(err)
	}

	var in []*kgo.Record
	for _, c := range fixtures.Campaigns() {
		in = append(in, raw(topics.Raw, "acme", mailchimp.KindCampaign, c))
	}
	for _, m := range fixtures.ActivityMembers() {
		in = append(in, raw(topics.Raw, "acme", mailchimp.KindEmailActivity, m))
	}
	for _, n := range fixtures.ListWebhookNames() {
		in = append(in, raw(topics.Raw, "acme", mailchimp.KindListWebhook, fixtures.ListWebhooks()[n]))
	}
	for _, u := range mandrillUnits(t) {
		in = append(in, raw(topics.Raw, "acme", mailchimp.KindMandrillEvent, u))
		in = append(in, raw(topics.Raw, "custom", mailchimp.KindMandrillEvent, u))
	}
	long := strings.Repeat("x", 300) + "@example.com"
	in = append(in,
		raw(topics.Raw, "acme", mailchimp.KindListWebhook, []byte("type=cleaned&fired_at=yesterday")),
		raw(topics.Raw, "ghost", mailchimp.KindListWebhook, fixtures.Read("list-webhooks/cleaned-hard.form")),
		raw(topics.Raw, "preserve", mailchimp.KindListWebhook, []byte("type=cleaned&fired_at=2026-10-02+14%3A21%3A09&data%5Breason%5D=hard&data%5Bemail%5D="+url.QueryEscape(long))),
	)
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// Campaign objects first, so titles are known before the events that need them.
	if err := prod.ProduceSync(ctx, in[:len(fixtures.Campaigns())]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, in[len(fixtures.Campaigns()):]...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- mapper.Run(runCtx, mapper.Config{
			Brokers: brokers, Topics: topics, Group: prefix + "mapper", TransactionID: prefix + "mapper-1",
			Sources: sources, Codec: codec, Identities: ids, Campaigns: campaigns.NewStore(rdb),
			Log: zaptest.NewLogger(t), MaxPoll: 7,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mapper.Run: %v", err)
		}
	}()

	// acme: 6 activity events + cleaned-hard + 4 Mandrill; custom: Jordan's open and click.
	evRecs := kafkatest.Consume(t, brokers, topics.Events, 13, 30*time.Second)
	counts := map[got]int{}
	idsByName := map[string]map[string]bool{}
	for _, r := range evRecs {
		e, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != string(e.Key()) || kafka.Header(r, kafka.HeaderEventID) != e.ID {
			t.Errorf("record key/header do not match event %s", e.ID)
		}
		if e.Lineage.Topic != topics.Raw || e.Lineage.Kind == "" || e.Lineage.ReceivedAt.IsZero() {
			t.Errorf("lineage %+v", e.Lineage)
		}
		counts[got{e.Name, e.Identity, e.CampaignTitle}]++
		if idsByName[e.Name] == nil {
			idsByName[e.Name] = map[string]bool{}
		}
		idsByName[e.Name][e.ID] = true
	}
	want := map[got]int{
		{"Bounce Email", "priya.raman@example.com", "October product update"}:           2, // activity + cleaned-hard, one id
		{"Bounce Email", "full.box@example.com", "October product update"}:              1,
		{"Open Email", "jordan.lee@example.com", "October product update"}:              2,
		{"Click Email Link", "jordan.lee@example.com", "October product update"}:        1,
		{"Open Email", "mei.chen@example.com", "October product update"}:                1,
		{"Open Email", "jordan.lee@example.com", "Your order #88213 has shipped"}:       1,
		{"Click Email Link", "jordan.lee@example.com", "Your order #88213 has shipped"}: 1,
		{"Bounce Email", "nobody@invalid.example", "Reset your password"}:               1,
		{"Bounce Email", "full.box@example.com", "Weekly digest"}:                       1,
		{"Open Email", "User-42", "Your order #88213 has shipped"}:                      1,
		{"Click Email Link", "User-42", "Your order #88213 has shipped"}:                1,
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Fatalf("heap.events (-want +got):\n%s", diff)
	}
	// Priya's two bounce records share one id: Heap keeps one.
	if n := len(idsByName["Bounce Email"]); n != 4 {
		t.Errorf("%d distinct bounce ids, want 4", n)
	}

	// custom: the two bounces have no identity yet.
	pending := kafkatest.Consume(t, brokers, topics.Pending, 2, 30*time.Second)
	if len(pending) != 2 {
		t.Fatalf("%d pending, want 2", len(pending))
	}
	for _, r := range pending {
		e, err := codec.Decode(r.Value)
		if err != nil || e.Identity != "" || e.AppID != custom || e.Name != "Bounce Email" || e.EmailKey == "" {
			t.Errorf("pending %+v (%v)", e, err)
		}
	}
	rawDead := kafkatest.Consume(t, brokers, topics.RawDLQ, 2, 30*time.Second)
	if len(rawDead) != 2 {
		t.Fatalf("%d raw dead letters, want 2", len(rawDead))
	}
	for _, r := range rawDead {
		reason := kafka.Header(r, kafka.HeaderReason)
		if reason == "" || kafka.Header(r, kafka.HeaderOrigin) == "" || kafka.Header(r, kafka.HeaderKind) == "" {
			t.Errorf("dead letter without reason/origin/kind: %q", reason)
		}
	}
	// Campaign metadata is in the compacted topic too: four API objects (the
	// draft included) and the audience campaign webhook.
	camps := kafkatest.Consume(t, brokers, topics.Campaigns, len(fixtures.Campaigns())+1, 30*time.Second)
	if len(camps) != len(fixtures.Campaigns())+1 {
		t.Errorf("%d campaign records, want %d", len(camps), len(fixtures.Campaigns())+1)
	}
	evDead := kafkatest.Consume(t, brokers, topics.EventsDLQ, 1, 30*time.Second)
	if len(evDead) != 1 || !strings.Contains(kafka.Header(evDead[0], kafka.HeaderReason), "identity longer than 255") {
		t.Fatalf("events dlq: %d records", len(evDead))
	}
}

// TestMapperSessions runs one mapper with two sessions: both join the group
// as static members under their own ids, share the partitions, and every
// input record is mapped exactly once.
func TestMapperSessions(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 4)
	rdb := redistest.Client(t)
	prefix := kafkatest.Prefix(t)
	sources, err := source.New(source.Source{ID: "acme", HeapAppID: prefix + "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	produceOpens(t, brokers, topics.Raw, n, true)
	ctx := context.Background()
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	assigned := map[int]int{} // session: partitions it was given
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- mapper.Run(runCtx, mapper.Config{
			Brokers: brokers, Topics: topics, Group: prefix + "mapper", TransactionID: prefix + "mapper-1",
			InstanceID: prefix + "mapper-1", Sources: sources, Codec: codec, Identities: identity.NewStore(rdb),
			Campaigns: campaigns.NewStore(rdb), Log: zaptest.NewLogger(t), MaxPoll: 25, Sessions: 2,
			SessionOpts: func(i int) []kgo.Opt {
				return []kgo.Opt{kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
					mu.Lock()
					defer mu.Unlock()
					assigned[i] += len(m[topics.Raw])
				})}
			},
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mapper.Run: %v", err)
		}
	}()

	recs := kafkatest.Consume(t, brokers, topics.Events, n, 60*time.Second)
	ids := map[string]int{}
	for _, r := range recs {
		ids[kafka.Header(r, kafka.HeaderEventID)]++
	}
	if len(recs) != n || len(ids) != n {
		t.Fatalf("%d events, %d distinct, want %d of each", len(recs), len(ids), n)
	}

	cl, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var seen string // what the group looked like last, logged as it changes
	testsupport.WaitFor(t, "both sessions as static members, each with partitions", 30*time.Second, func() bool {
		described, err := adm.DescribeGroups(ctx, prefix+"mapper")
		var members []string
		if err == nil {
			for _, m := range described[prefix+"mapper"].Members {
				if m.InstanceID != nil {
					members = append(members, *m.InstanceID)
				}
			}
		}
		slices.Sort(members)
		mu.Lock()
		defer mu.Unlock()
		if s := fmt.Sprintf("group members %v (err %v), partitions assigned by session %v", members, err, assigned); s != seen {
			t.Log(s)
			seen = s
		}
		return assigned[0] > 0 && assigned[1] > 0 && slices.Equal(members, []string{prefix + "mapper-1", prefix + "mapper-1-s1"})
	})
}

// TestAbortedBatchRetried: while a dependency fails (here the cache is
// being rebuilt), the batch's transaction aborts and the batch is mapped
// again after a backoff; once it commits, every event is in heap.events
// once.
func TestAbortedBatchRetried(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := kafkatest.Topics(t, brokers, 1)
	rdb := redistest.Client(t)
	prefix := kafkatest.Prefix(t)
	sources, err := source.New(source.Source{ID: "acme", HeapAppID: prefix + "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	produceOpens(t, brokers, topics.Raw, n, false)
	ctx := context.Background()
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := 0
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- mapper.Run(runCtx, mapper.Config{
			Brokers: brokers, Topics: topics, Group: prefix + "mapper", TransactionID: prefix + "mapper-1",
			Sources: sources, Codec: codec, Identities: identity.NewStore(rdb), Campaigns: campaigns.NewStore(rdb),
			Log: zaptest.NewLogger(t),
			CacheReady: func(context.Context) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				asked++
				return asked > 2, nil // the first two batches abort
			},
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mapper.Run: %v", err)
		}
	}()
	recs := kafkatest.Consume(t, brokers, topics.Events, n, 30*time.Second)
	ids := map[string]int{}
	for _, r := range recs {
		ids[kafka.Header(r, kafka.HeaderEventID)]++
	}
	if len(recs) != n || len(ids) != n {
		t.Fatalf("%d events, %d distinct, want %d of each", len(recs), len(ids), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked < 3 {
		t.Errorf("the cache was asked %d times, want the two aborted batches and the committed one", asked)
	}
}

// produceOpens writes n Mandrill opens of source acme (user<i>@example.com)
// to topic; spread keys each by its number, so they land on every partition.
func produceOpens(t *testing.T, brokers []string, topic string, n int, spread bool) {
	t.Helper()
	in := make([]*kgo.Record, 0, n)
	for i := range n {
		ev := fmt.Appendf(nil, `{"event":"open","ts":1759413940,"_id":"m%d","msg":{"_id":"m%d","email":"user%d@example.com"}}`, i, i, i)
		r := raw(topic, "acme", mailchimp.KindMandrillEvent, ev)
		if spread {
			r.Key = fmt.Appendf(nil, "acme/%d", i)
		}
		in = append(in, r)
	}
	prod, err := kgo.NewClient(kafkatest.Opts(t, brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(context.Background(), in...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
