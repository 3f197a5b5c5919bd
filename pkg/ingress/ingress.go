// Package ingress receives Mailchimp audience and Mailchimp Transactional
// (Mandrill) webhooks and publishes each payload unit, byte-for-byte, to
// mailchimp.raw. It answers 2xx only once Kafka acknowledged the write.
package ingress

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/readiness"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/requestid"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/secret"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Config is what the handler needs.
type Config struct {
	Sources        *source.Sources
	Topic          string // mailchimp.raw
	DLQTopic       string // mailchimp.dlq: units that can never be a record of Topic
	ProduceTimeout time.Duration
	// MaxInflightBytes bounds the request-body bytes all requests hold at
	// once (default DefaultInflightBytes).
	MaxInflightBytes int64
	// MaxUnitBytes is the largest payload unit written to Topic (default
	// DefaultMaxUnitBytes); a larger one is dead-lettered alone.
	MaxUnitBytes int
	Log          *zap.Logger
	Ready        []readiness.Check
	Metrics      *metrics.Pipeline // nil: none
	now          func() time.Time
}

type handler struct {
	cfg    Config
	pub    kafka.Publisher
	budget *budget
}

// NewHandler returns the ingress HTTP API. pub (kafka.Producer) must keep no
// record nor any of its bytes once Publish returned: the handler reuses them.
func NewHandler(cfg Config, pub kafka.Publisher) http.Handler {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 8 * time.Second
	}
	if cfg.MaxUnitBytes <= 0 {
		cfg.MaxUnitBytes = DefaultMaxUnitBytes
	}
	h := &handler{cfg: cfg, pub: pub, budget: newBudget(cfg.MaxInflightBytes)}
	mux := http.NewServeMux()
	// GET also answers HEAD: Mailchimp validates the URL with a GET.
	mux.HandleFunc("GET /webhooks/mailchimp/{source}/{secret}", h.listValidate)
	mux.HandleFunc("POST /webhooks/mailchimp/{source}/{secret}", h.listPost)
	mux.HandleFunc("HEAD /webhooks/mandrill/{source}", h.mandrillHead)
	mux.HandleFunc("POST /webhooks/mandrill/{source}", h.mandrillPost)
	mux.HandleFunc("GET /healthz", readiness.Live)
	// The public listener says only whether it is ready; the reasons are
	// on ADMIN_ADDR, which the internet does not reach.
	mux.HandleFunc("GET /readyz", readiness.StatusOnly(readiness.Handler(cfg.Ready)))
	return mux
}

type problem struct {
	status int
	msg    string
}

// errNotFound is every refusal of an audience webhook URL: an unknown
// source, a source without audience webhooks and a wrong secret answer
// alike, so the answer does not tell which sources exist.
var errNotFound = &problem{http.StatusNotFound, "not found"}

// listSource authenticates an audience webhook URL.
func (h *handler) listSource(r *http.Request) (source.Source, *problem) {
	src, ok := h.cfg.Sources.Get(r.PathValue("source"))
	if !secret.Equal(r.PathValue("secret"), src.WebhookSecret) || !ok {
		return source.Source{}, errNotFound
	}
	return src, nil
}

func (h *handler) listValidate(w http.ResponseWriter, r *http.Request) {
	if _, p := h.listSource(r); p != nil {
		h.fail(w, r, "", p, mailchimp.KindListWebhook, "")
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) listPost(w http.ResponseWriter, r *http.Request) {
	rid := requestid.From(r)
	w.Header().Set(requestid.Header, rid)
	src, p := h.listSource(r)
	if p != nil {
		h.fail(w, r, "", p, mailchimp.KindListWebhook, rid)
		return
	}
	bd := &body{b: h.budget}
	defer bd.release()
	if p := bd.read(w, r, MaxListBody); p != nil {
		h.fail(w, r, src.ID, p, mailchimp.KindListWebhook, rid)
		return
	}
	body := bd.buf
	hook, err := mailchimp.ParseListWebhook(body)
	if err != nil {
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, err.Error()}, mailchimp.KindListWebhook, rid)
		return
	}
	rec := h.record(src.ID, mailchimp.KindListWebhook, rid, hook.PartitionKey(), body)
	h.publish(w, r, src.ID, mailchimp.KindListWebhook, rid, rec)
}

func (h *handler) record(source, kind, rid, key string, value []byte) *kgo.Record {
	k := make([]byte, 0, len(source)+1+len(key))
	return &kgo.Record{
		Topic:   h.cfg.Topic,
		Key:     append(append(append(k, source...), '/'), key...),
		Value:   value,
		Headers: h.headers(source, kind, rid),
	}
}

// headers are a request's record headers (the topic contract's); the
// records of one request share them, and their values share one buffer.
func (h *handler) headers(source, kind, rid string) []kgo.RecordHeader {
	buf := make([]byte, 0, len(source)+len(kind)+len(time.RFC3339Nano)+len(rid))
	buf = append(buf, source...)
	a := len(buf)
	buf = append(buf, kind...)
	b := len(buf)
	buf = h.cfg.now().UTC().AppendFormat(buf, time.RFC3339Nano)
	c := len(buf)
	buf = append(buf, rid...)
	return []kgo.RecordHeader{
		{Key: kafka.HeaderSource, Value: buf[:a:a]},
		{Key: kafka.HeaderKind, Value: buf[a:b:b]},
		{Key: kafka.HeaderReceivedAt, Value: buf[b:c:c]},
		{Key: kafka.HeaderRequestID, Value: buf[c:len(buf):len(buf)]},
	}
}

func (h *handler) publish(w http.ResponseWriter, r *http.Request, source, kind, rid string, recs ...*kgo.Record) {
	if len(recs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ProduceTimeout)
		defer cancel()
		if err := h.pub.Publish(ctx, recs...); err != nil {
			// Not durably in Kafka: Mailchimp must retry.
			h.cfg.Log.Warn("publish failed", zap.String("source", source), zap.String("kind", kind),
				zap.String("request_id", rid), zap.Int("units", len(recs)), zap.Error(err))
			httpjson.Write(w, http.StatusServiceUnavailable, map[string]string{"error": "not stored, retry later", "request_id": rid})
			h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, "503")
			return
		}
	}
	h.cfg.Log.Info("accepted", zap.String("source", source), zap.String("kind", kind),
		zap.String("request_id", rid), zap.Int("units", len(recs)))
	httpjson.Write(w, http.StatusOK, accepted{Accepted: len(recs), RequestID: rid})
	h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, "200")
	h.cfg.Metrics.Add(metrics.IngressUnits, float64(len(recs)), source, kind)
}

// accepted is the 200 answer (its fields in the order a map's sorted keys
// would have them).
type accepted struct {
	Accepted  int    `json:"accepted"`
	RequestID string `json:"request_id"`
}

// fail answers a refused request. It logs the route, never the path: the
// path of an audience webhook holds its secret.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, source string, p *problem, kind, rid string) {
	h.cfg.Log.Info("refused", zap.String("source", source), zap.String("kind", kind), zap.String("request_id", rid),
		zap.Int("status", p.status), zap.String("reason", p.msg), zap.String("route", r.Pattern))
	httpjson.Write(w, p.status, map[string]string{"error": p.msg, "request_id": rid})
	h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, strconv.Itoa(p.status))
}

func zapReason(reason string) zap.Field { return zap.String("reason", reason) }
