package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
)

// BenchmarkEncode encodes one event as Avro and reports the cost as a
// multiple of json.Marshal of the same struct in the same run (ns/op covers
// both loops).
func BenchmarkEncode(b *testing.B) {
	c, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	e := events.Event{ID: "0123456789abcdef0123456789abcdef", SourceID: "acme", AppID: "app", Identity: "jordan.lee@example.com",
		EmailKey: "k", Name: events.NameClick, Time: time.Unix(1759413940, 0), CampaignID: "b3f0a9c1d2",
		CampaignTitle: "October product update", ListID: "7c1e5d2a90", IP: "192.0.2.44", URL: "https://shop.example/october",
		Lineage: events.Lineage{Topic: "mailchimp.raw", Partition: 1, Offset: 42, Kind: "email-activity", ReceivedAt: time.Unix(1759413941, 0)}}
	b.ReportAllocs()
	start := time.Now()
	for range b.N {
		if _, err := json.Marshal(e); err != nil {
			b.Fatal(err)
		}
	}
	floor := time.Since(start)
	start = time.Now()
	for range b.N {
		if _, err := c.Encode(e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start))/float64(floor), "x-json-floor")
}

// BenchmarkDecode reports Decode's time as a ratio of json.Unmarshal of the
// same event.
func BenchmarkDecode(b *testing.B) {
	c, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	e := events.Event{ID: "0123456789abcdef0123456789abcdef", SourceID: "acme", AppID: "app", Identity: "jordan.lee@example.com",
		EmailKey: "k", Name: events.NameClick, Time: time.Unix(1759413940, 0), CampaignID: "b3f0a9c1d2",
		CampaignTitle: "October product update", ListID: "7c1e5d2a90", IP: "192.0.2.44", URL: "https://shop.example/october",
		Tags:    []string{"a", "b"},
		Lineage: events.Lineage{Topic: "mailchimp.raw", Partition: 1, Offset: 42, Kind: "email-activity", ReceivedAt: time.Unix(1759413941, 0)}}
	js, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	bin, err := c.Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	for range b.N {
		var got events.Event
		if err := json.Unmarshal(js, &got); err != nil {
			b.Fatal(err)
		}
	}
	floor := time.Since(start)
	start = time.Now()
	for range b.N {
		if _, err := c.Decode(bin); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start))/float64(floor), "x-json-floor")
}
