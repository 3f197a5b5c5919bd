// Package metrics holds the pipeline's Prometheus metrics: what flows per
// source and event type, Heap's answers, pacing waits and end-to-end latency,
// plus franz-go's client metrics (kprom). A nil *Pipeline records nothing,
// so parts stay usable without metrics in tests.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Pipeline is one process's metrics.
type Pipeline struct {
	reg *prometheus.Registry

	IngressRequests   *prometheus.CounterVec // source, kind, status
	IngressUnits      *prometheus.CounterVec // source, kind
	MapperEvents      *prometheus.CounterVec // source, event, outcome: heap|pending|dead_lettered
	MapperRawDead     *prometheus.CounterVec // source, kind
	MapperTxns        *prometheus.CounterVec // outcome: committed|aborted|rebalanced
	EmitterEvents     *prometheus.CounterVec // app, event, outcome: delivered|already_delivered|dead_lettered
	HeapRequests      *prometheus.CounterVec // app, outcome: ok|rejected|retryable
	PacingWait        *prometheus.CounterVec // app, budget: app|identity (seconds)
	EmitterQueued     prometheus.Gauge
	EmitterPaused     prometheus.Gauge
	LatencyFromEvent  prometheus.Histogram   // Mailchimp event time -> Heap 2xx
	LatencyFromIngest prometheus.Histogram   // ingress receipt -> Heap 2xx
	PollerRequests    *prometheus.CounterVec // source, outcome
}

// New registers a process's metrics.
func New() *Pipeline {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	p := &Pipeline{
		reg:             reg,
		IngressRequests: f("ingress_requests_total", "Webhook requests by answer.", "source", "kind", "status"),
		IngressUnits:    f("ingress_units_published_total", "Payload units acknowledged by Kafka.", "source", "kind"),
		MapperEvents:    f("mapper_events_total", "Mapped events by where they went.", "source", "event", "outcome"),
		MapperRawDead:   f("mapper_raw_dead_lettered_total", "Raw payloads dead-lettered to mailchimp.dlq.", "source", "kind"),
		MapperTxns:      f("mapper_transactions_total", "Mapper transactions by outcome.", "outcome"),
		EmitterEvents:   f("emitter_events_total", "Events by outcome.", "app", "event", "outcome"),
		HeapRequests:    f("emitter_heap_requests_total", "Heap Track API requests by outcome.", "app", "outcome"),
		PacingWait:      f("emitter_pacing_wait_seconds_total", "Time spent waiting for Heap budgets.", "app", "budget"),
		PollerRequests:  f("poller_requests_total", "Mailchimp API calls by outcome.", "source", "outcome"),
		EmitterQueued:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "emitter_queued_events", Help: "Events waiting in app queues."}),
		EmitterPaused:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "emitter_paused_partitions", Help: "Partitions paused by full app backlogs."}),
		LatencyFromEvent: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pipeline_latency_from_event_seconds",
			Help: "From the Mailchimp event's time to Heap's 2xx.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 20)}),
		LatencyFromIngest: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pipeline_latency_from_receipt_seconds",
			Help: "From ingress receipt to Heap's 2xx.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
	}
	reg.MustRegister(p.EmitterQueued, p.EmitterPaused, p.LatencyFromEvent, p.LatencyFromIngest)
	return p
}

// Handler serves /metrics.
func (p *Pipeline) Handler() http.Handler {
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{})
}

// KafkaHooks export one long-lived client's metrics (kprom) under
// mailchimpheap_<role>_. kprom registers a client's metrics when it starts and
// drops them when it closes, so a role has one live client at a time.
func (p *Pipeline) KafkaHooks(role string) []kgo.Opt {
	return p.kafkaHooks(role)
}

// KafkaSessionHooks are KafkaHooks for one of several clients of a role
// alive at once (the mapper's sessions), told apart by a "session" label.
func (p *Pipeline) KafkaSessionHooks(role string, session int) []kgo.Opt {
	return p.kafkaHooks(role, kprom.WithStaticLabel(prometheus.Labels{"session": strconv.Itoa(session)}))
}

func (p *Pipeline) kafkaHooks(role string, opts ...kprom.Opt) []kgo.Opt {
	if p == nil {
		return nil
	}
	opts = append([]kprom.Opt{kprom.Subsystem(role), kprom.Registry(p.reg)}, opts...)
	return []kgo.Opt{kgo.WithHooks(kprom.NewMetrics("mailchimpheap", opts...))}
}

// Inc adds one to a counter of vec, when metrics are on.
func (p *Pipeline) Inc(vec func(*Pipeline) *prometheus.CounterVec, labels ...string) {
	p.Add(vec, 1, labels...)
}

// Add adds v to a counter of vec, when metrics are on.
func (p *Pipeline) Add(vec func(*Pipeline) *prometheus.CounterVec, v float64, labels ...string) {
	if p == nil || v == 0 {
		return
	}
	vec(p).WithLabelValues(labels...).Add(v)
}

// Latency records one delivered event's latencies; the caller counts it.
func (p *Pipeline) Latency(eventTime, receivedAt time.Time, now time.Time) {
	if p == nil {
		return
	}
	if !eventTime.IsZero() {
		p.LatencyFromEvent.Observe(now.Sub(eventTime).Seconds())
	}
	if !receivedAt.IsZero() {
		p.LatencyFromIngest.Observe(now.Sub(receivedAt).Seconds())
	}
}

// Backlog records the emitter's queue and paused partitions.
func (p *Pipeline) Backlog(queued, paused int) {
	if p == nil {
		return
	}
	p.EmitterQueued.Set(float64(queued))
	p.EmitterPaused.Set(float64(paused))
}

// Selectors for Inc and Add.
var (
	IngressRequests = func(p *Pipeline) *prometheus.CounterVec { return p.IngressRequests }
	IngressUnits    = func(p *Pipeline) *prometheus.CounterVec { return p.IngressUnits }
	MapperEvents    = func(p *Pipeline) *prometheus.CounterVec { return p.MapperEvents }
	MapperRawDead   = func(p *Pipeline) *prometheus.CounterVec { return p.MapperRawDead }
	MapperTxns      = func(p *Pipeline) *prometheus.CounterVec { return p.MapperTxns }
	EmitterEvents   = func(p *Pipeline) *prometheus.CounterVec { return p.EmitterEvents }
	HeapRequests    = func(p *Pipeline) *prometheus.CounterVec { return p.HeapRequests }
	PacingWait      = func(p *Pipeline) *prometheus.CounterVec { return p.PacingWait }
	PollerRequests  = func(p *Pipeline) *prometheus.CounterVec { return p.PollerRequests }
)
