package mapper

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// TestDeadLetterInvalid: a Mandrill batch's units are records of their own,
// so a unit whose ts or address cannot be believed is dead-lettered alone,
// with a reason that names the field and never the address, in the record
// header and in the log; the rest of the batch maps. The time is judged
// against the received-at header, or the record's timestamp without one.
func TestDeadLetterInvalid(t *testing.T) {
	sources, err := source.New(source.Source{ID: "acme", HeapAppID: "app-acme"})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	topics := kafka.NewTopics("t.")
	form, err := url.ParseQuery(string(fixtures.Read("mandrill/webhook.form")))
	if err != nil {
		t.Fatal(err)
	}
	good, err := mailchimp.SplitMandrillBatch(form.Get(mailchimp.MandrillEventsField))
	if err != nil {
		t.Fatal(err)
	}
	open := func(ts, email string) []byte {
		return []byte(`{"event":"open","ts":` + ts + `,"_id":"m1","msg":{"_id":"m1","email":"` + email + `"}}`)
	}
	received := time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)
	const tail = " out of range (before 2000 or more than a day ahead)"
	bad := []struct {
		value      []byte
		noReceived bool // no received-at header: the record's timestamp counts
		reason     string
	}{
		{value: open("9223372036854775807", "jordan.lee@example.com"), reason: "malformed payload: mandrill event open: ts: 9223372036854775807" + tail},
		{value: open("18446745833123463", "jordan.lee@example.com"), reason: "malformed payload: mandrill event open: ts: 18446745833123463" + tail},
		{value: open("253402300800", "jordan.lee@example.com"), reason: "malformed payload: mandrill event open: ts: 253402300800" + tail},
		{value: open("-1", "jordan.lee@example.com"), reason: "malformed payload: mandrill event open: ts: -1" + tail},
		{value: open("1791280801", "jordan.lee@example.com"), reason: "malformed payload: mandrill event open: ts: 1791280801" + tail},
		{value: open("1791280801", "jordan.lee@example.com"), noReceived: true, reason: "malformed payload: mandrill event open: ts: 1791280801" + tail},
		{value: open("1759413912", `jordan.\u0007lee@example.com`), reason: "malformed payload: mandrill event open: msg.email: control character at byte 7"},
		{value: open("1759413912", "jordan.\xfflee@example.com"), reason: "malformed payload: mandrill event open: msg.email: invalid UTF-8 (U+FFFD) at byte 7"},
		{value: []byte("type=cleaned&fired_at=2026-10-02+14%3A21%3A09&data%5Breason%5D=hard&data%5Bemail%5D=jordan.%1Blee%40example.com"),
			reason: "malformed payload: list webhook cleaned: data[email]: control character at byte 7"},
	}
	record := func(i int, kind string, value []byte, withReceived bool) *kgo.Record {
		hdrs := []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte("acme")},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderRequestID, Value: []byte("req-1")},
		}
		if withReceived {
			hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderReceivedAt, Value: []byte(received.Format(time.RFC3339Nano))})
		}
		return &kgo.Record{Topic: topics.Raw, Offset: int64(i), Key: []byte("acme"), Value: value, Headers: hdrs, Timestamp: received}
	}
	// The bad units between the batch's good ones, as ingress would write
	// one batch holding them all.
	var recs []*kgo.Record
	wantDead := map[int64]string{}
	for i := range max(len(good), len(bad)) {
		if i < len(good) {
			recs = append(recs, record(len(recs), mailchimp.KindMandrillEvent, good[i], true))
		}
		if i < len(bad) {
			kind := mailchimp.KindMandrillEvent
			if bad[i].value[0] != '{' {
				kind = mailchimp.KindListWebhook
			}
			wantDead[int64(len(recs))] = bad[i].reason
			recs = append(recs, record(len(recs), kind, bad[i].value, !bad[i].noReceived))
		}
	}
	core, logs := observer.New(zap.WarnLevel)
	m := &loop{par: 1, cfg: Config{Topics: topics, Sources: sources, Codec: codec, Log: zap.New(core),
		Identities: memIdentities{}, Campaigns: memCampaigns{}}}
	out, err := m.transform(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	gotDead := map[int64]string{}
	var mapped int
	for _, r := range out {
		switch r.Topic {
		case topics.RawDLQ:
			var off int64
			if _, err := fmt.Sscanf(kafka.Header(r, kafka.HeaderOrigin), topics.Raw+"/0/%d", &off); err != nil {
				t.Fatalf("origin %q: %v", kafka.Header(r, kafka.HeaderOrigin), err)
			}
			gotDead[off] = kafka.Header(r, kafka.HeaderReason)
		case topics.Events, topics.Pending:
			mapped++
		}
	}
	if len(gotDead) != len(wantDead) {
		t.Errorf("%d dead letters, want %d: %v", len(gotDead), len(wantDead), gotDead)
	}
	for off, want := range wantDead {
		if got := gotDead[off]; got != want {
			t.Errorf("record %d: reason %q, want %q", off, got, want)
		}
	}
	if mapped == 0 {
		t.Error("the batch's good units mapped to nothing")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "jordan") || strings.Contains(f.String, "example.com") {
				t.Errorf("log %q field %s quotes the address: %q", e.Message, f.Key, f.String)
			}
		}
	}
	if n := logs.FilterMessage("dead-lettering raw record").Len(); n != len(wantDead) {
		t.Errorf("%d dead letters logged, want %d", n, len(wantDead))
	}
}
