package mapper

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// memIdentities knows the identity of every address whose key is even-ish.
type memIdentities map[string]string

func (m memIdentities) Resolve(_ context.Context, app string, keys []string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := m[app+"/"+k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

type memCampaigns map[string]string

func (m memCampaigns) Remember(_ context.Context, source string, metas []campaigns.Meta) error {
	for _, c := range metas {
		m[source+"/"+c.ID] = c.Title
	}
	return nil
}

func (m memCampaigns) Titles(_ context.Context, source string, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range ids {
		if v, ok := m[source+"/"+id]; ok {
			out[id] = v
		}
	}
	return out, nil
}

// TestTransformParallel maps one large mixed batch (events, campaign
// metadata, address changes, bad records, unknown sources, replay salts) on
// one goroutine and on several: the output records are the same, in the
// same order.
func TestTransformParallel(t *testing.T) {
	testsupport.Integration(t, "takes over 2 s")
	sources, err := source.New(
		source.Source{ID: "acme", HeapAppID: "app-acme"},
		source.Source{ID: "custom", HeapAppID: "app-custom", EmailProperty: "user_id"},
	)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	topics := kafka.NewTopics("t.")
	var recs []*kgo.Record
	for i := range 1500 {
		src := []string{"acme", "custom", "ghost"}[i%7%3]
		email := fmt.Sprintf("User%d@Example.com", i%50)
		var kind string
		var val []byte
		switch i % 6 {
		case 0:
			kind = mailchimp.KindListWebhook
			val = []byte(url.Values{"type": {"cleaned"}, "fired_at": {"2026-10-02 14:21:09"}, "data[list_id]": {"l1"},
				"data[campaign_id]": {fmt.Sprintf("c%d", i%9)}, "data[reason]": {"hard"}, "data[email]": {email}}.Encode())
		case 1:
			kind = mailchimp.KindListWebhook
			val = []byte(url.Values{"type": {"campaign"}, "fired_at": {"2026-10-02 14:21:09"}, "data[id]": {fmt.Sprintf("c%d", i%9)},
				"data[subject]": {fmt.Sprintf("Subject %d", i)}, "data[list_id]": {"l1"}}.Encode())
		case 2:
			kind = mailchimp.KindListWebhook
			val = []byte(url.Values{"type": {"upemail"}, "fired_at": {"2026-10-02 14:21:09"},
				"data[old_email]": {email}, "data[new_email]": {"new-" + email}}.Encode())
		case 3:
			kind, val = mailchimp.KindMandrillEvent, []byte("{not json")
		default:
			kind = mailchimp.KindMandrillEvent
			val = fmt.Appendf(nil, `{"event":"click","ts":%d,"_id":"m%d","url":"https://x.example/%d","msg":{"_id":"m%d","email":%q,"subject":"S","tags":["a","b"]}}`,
				1759413940+i, i, i, i, email)
		}
		hdrs := []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(src)},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderReceivedAt, Value: fmt.Appendf(nil, "2026-10-05T10:00:%02d.123456Z", i/100)},
			{Key: kafka.HeaderRequestID, Value: fmt.Appendf(nil, "req-%d", i)},
		}
		if i%10 == 9 {
			hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReplaySalt, Value: []byte("salt")})
		}
		recs = append(recs, &kgo.Record{Topic: topics.Raw, Partition: int32(i % 3), Offset: int64(i), Key: []byte(src), Value: val, Headers: hdrs})
	}
	ids := memIdentities{}
	for i := 0; i < 50; i += 2 {
		ids["app-acme/"+events.EmailKey(fmt.Sprintf("user%d@example.com", i))] = fmt.Sprintf("id-%d", i)
	}

	run := func(par int) []*kgo.Record {
		m := &loop{par: par, cfg: Config{Topics: topics, Sources: sources, Codec: codec, Log: zap.NewNop(),
			Identities: ids, Campaigns: memCampaigns{}}}
		out, err := m.transform(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	type rec struct {
		Topic, Key, Value string
		Headers           []kgo.RecordHeader
	}
	flat := func(rs []*kgo.Record) []rec {
		out := make([]rec, len(rs))
		for i, r := range rs {
			out[i] = rec{r.Topic, string(r.Key), string(r.Value), r.Headers}
		}
		return out
	}
	want := flat(run(1))
	topicsSeen := map[string]int{}
	for _, r := range want {
		topicsSeen[r.Topic]++
	}
	for _, tp := range []string{topics.Events, topics.Pending, topics.RawDLQ, topics.Campaigns, topics.Identities} {
		if topicsSeen[tp] == 0 {
			t.Errorf("the batch produced nothing to %s: %v", tp, topicsSeen)
		}
	}
	for _, par := range []int{2, 3, 8} {
		if diff := cmp.Diff(want, flat(run(par))); diff != "" {
			t.Errorf("%d goroutines (-one +several):\n%s", par, diff)
		}
	}
}
