package mapper

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// BenchmarkTransform maps one transaction's worth of records (2000: three
// Mandrill events to one audience webhook, as the perf harness sends) with
// in-memory lookups: the mapper's own CPU per record, without Kafka and
// Redis, as a multiple of only decoding the same payloads with encoding/json
// and url.ParseQuery (x-decode-floor). ns/op covers both loops.
func BenchmarkTransform(b *testing.B) {
	sources, err := source.New(source.Source{ID: "s0", HeapAppID: "app-s0", EmailProperty: "email"})
	if err != nil {
		b.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	topics := kafka.NewTopics("")
	ids, camps := memIdentities{}, memCampaigns{}
	var recs []*kgo.Record
	for i := range 2000 {
		em := fmt.Sprintf("user%d@example.com", i%500)
		ids["app-s0/"+events.EmailKey(em)] = fmt.Sprintf("id-%d", i%500)
		var kind string
		var val []byte
		if i%4 == 3 {
			kind = mailchimp.KindListWebhook
			val = []byte(url.Values{"type": {"cleaned"}, "fired_at": {"2026-10-02 14:21:09"}, "data[list_id]": {"7c1e5d2a90"},
				"data[campaign_id]": {fmt.Sprintf("c%04d", i%20)}, "data[reason]": {"hard"}, "data[email]": {em}}.Encode())
		} else {
			kind = mailchimp.KindMandrillEvent
			val = fmt.Appendf(nil, `{"event":"open","ts":1759413940,"_id":"m%08d","ip":"192.0.2.44","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6)","msg":{"_id":"m%08d","ts":1759413640,"state":"sent","subject":"Your order #%d has shipped","email":%q,"sender":"no-reply@shop.example","tags":["shipping","orders"],"metadata":{"user_ref":"u-%d"}}}`,
				i, i, i, em, i)
		}
		recs = append(recs, &kgo.Record{Topic: topics.Raw, Key: []byte("s0/" + em), Value: val, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte("s0")},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte("2026-10-05T10:00:00.123456Z")},
			{Key: kafka.HeaderRequestID, Value: fmt.Appendf(nil, "perf-%d", i)},
		}})
	}
	for c := range 20 {
		camps[fmt.Sprintf("s0/c%04d", c)] = fmt.Sprintf("October product update %d", c)
	}
	m := &loop{par: 1, cfg: Config{Topics: topics, Sources: sources, Codec: codec, Log: zap.NewNop(), Identities: ids, Campaigns: camps}}
	// As in batch, where each transaction is flushed before the next maps:
	// its arenas are reused (the output here is never produced).
	m.flushed = true
	b.ReportAllocs()
	b.ResetTimer()
	// The floor, in the same run: only decoding the same payloads the
	// generic way (encoding/json into a map, url.ParseQuery).
	start := time.Now()
	for range b.N {
		for _, r := range recs {
			if r.Headers[1].Value[0] == 'l' {
				if _, err := url.ParseQuery(string(r.Value)); err != nil {
					b.Fatal(err)
				}
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(r.Value, &v); err != nil {
				b.Fatal(err)
			}
		}
	}
	floor := time.Since(start)
	start = time.Now()
	for range b.N {
		if _, err := m.transform(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	subject := time.Since(start)
	b.ReportMetric(float64(subject.Nanoseconds())/float64(b.N*len(recs)), "ns/record")
	b.ReportMetric(float64(subject)/float64(floor), "x-decode-floor")
}
