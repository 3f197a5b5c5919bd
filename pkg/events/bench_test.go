package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
)

func benchEvent() events.Event {
	return events.Event{ID: "0123456789abcdef0123456789abcdef", SourceID: "acme", AppID: "app", Identity: "jordan.lee@example.com",
		EmailKey: "k", Name: events.NameClick, Time: time.Unix(1759413940, 0), CampaignID: "b3f0a9c1d2",
		CampaignTitle: "October product update", ListID: "7c1e5d2a90", IP: "192.0.2.44", URL: "https://shop.example/october",
		Tags:    []string{"a", "b"},
		Lineage: events.Lineage{Topic: "mailchimp.raw", Partition: 1, Offset: 42, Kind: "email-activity", ReceivedAt: time.Unix(1759413941, 0)}}
}

// vsFloor runs floor and then fn b.N times each and reports fn's time as a
// multiple of floor's in the same run (ns/op and allocs cover both loops).
func vsFloor(b *testing.B, floor, fn func() error) {
	b.ReportAllocs()
	start := time.Now()
	for range b.N {
		if err := floor(); err != nil {
			b.Fatal(err)
		}
	}
	f := time.Since(start)
	start = time.Now()
	for range b.N {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start))/float64(f), "x-json-floor")
}

// BenchmarkEncode: Avro encoding against json.Marshal of the same struct.
func BenchmarkEncode(b *testing.B) {
	c, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	e := benchEvent()
	vsFloor(b, func() error { _, err := json.Marshal(e); return err }, func() error { _, err := c.Encode(e); return err })
}

// BenchmarkDecode: Avro decoding against json.Unmarshal of the same event.
func BenchmarkDecode(b *testing.B) {
	c, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	e := benchEvent()
	js, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	bin, err := c.Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	vsFloor(b, func() error { var got events.Event; return json.Unmarshal(js, &got) }, func() error { _, err := c.Decode(bin); return err })
}

// BenchmarkDecodeResolved: decoding a record of another version (the
// version 2 candidate), resolved to the current one, against
// json.Unmarshal of the same event.
func BenchmarkDecodeResolved(b *testing.B) {
	c := eventstest.Codec(b)
	e := benchEvent()
	js, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	bin := eventstest.SingleObjectV2(b, e, "Mozilla/5.0")
	vsFloor(b, func() error { var got events.Event; return json.Unmarshal(js, &got) }, func() error { _, err := c.Decode(bin); return err })
}
