package stack_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack/stacktest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sum adds the values of a family's series whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// TestStackMetrics: /metrics is scraped and parsed, and its counters tell
// what the end-to-end run did.
func TestStackMetrics(t *testing.T) {
	testsupport.Integration(t, "runs the whole stack")
	prefix := kafkatest.Prefix(t)
	env := stacktest.Env(t, prefix)
	env.SourcesFile = writeSources(t, prefix+"app")
	info := stacktest.Start(t, env)
	postFixtures(t, info.IngressURL)
	waitAccepted(t, info.Sink, 5, 60*time.Second)
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrape(t, info.AdminURL)
		if sum(fams, "emitter_events_total", map[string]string{"outcome": "delivered"}) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"ingress_requests_total", map[string]string{"status": "200", "source": "acme"}, 8},
		{"ingress_units_published_total", map[string]string{"kind": "mandrill-event"}, 9},
		{"mapper_events_total", map[string]string{"outcome": "heap"}, 5},
		{"mapper_transactions_total", map[string]string{"outcome": "committed"}, 1},
		{"emitter_events_total", map[string]string{"outcome": "delivered"}, 5},
		{"emitter_heap_requests_total", map[string]string{"outcome": "ok"}, 1},
		{"pipeline_latency_from_receipt_seconds", nil, 5},
		{"pipeline_latency_from_event_seconds", nil, 5},
	}
	for _, c := range checks {
		if got := sum(fams, c.name, c.labels); got < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
		}
	}
	kafkaMetrics := 0
	for name := range fams {
		if strings.HasPrefix(name, "mailchimpheap_") {
			kafkaMetrics++
		}
	}
	if kafkaMetrics == 0 {
		t.Error("no franz-go client metrics (kprom)")
	}
}
