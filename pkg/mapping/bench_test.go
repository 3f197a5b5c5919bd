package mapping_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// BenchmarkMapMandrill maps one Mandrill click and reports its cost as a
// multiple of the floor: json.Unmarshal of the same bytes into a map,
// measured in the same run. ns/op covers both loops.
func BenchmarkMapMandrill(b *testing.B) {
	raw := []byte(`{"event":"click","ts":1759413940,"_id":"m1","ip":"192.0.2.44","url":"https://shop.example/track/88213","user_agent":"Mozilla/5.0","msg":{"_id":"m1","ts":1759413600,"state":"sent","subject":"Your order has shipped","email":"jordan.lee@example.com","sender":"no-reply@shop.example","tags":["shipping"],"metadata":{"user_ref":"u-4471"}}}`)
	ss, err := source.New(source.Source{ID: "acme", HeapAppID: "app"})
	if err != nil {
		b.Fatal(err)
	}
	src, _ := ss.Get("acme")
	b.ReportAllocs()
	var floor, subject time.Duration
	start := time.Now()
	for range b.N {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			b.Fatal(err)
		}
	}
	floor = time.Since(start)
	// As the mapper calls it: onto an event array it reuses (Map copies
	// the Source to the heap on every call).
	evs := make([]events.Event, 0, 1)
	start = time.Now()
	for range b.N {
		if _, _, err := mapping.MapAppend(evs[:0], &src, mailchimp.KindMandrillEvent, raw, events.Lineage{}); err != nil {
			b.Fatal(err)
		}
	}
	subject = time.Since(start)
	b.ReportMetric(float64(subject)/float64(floor), "x-unmarshal-floor")
}
