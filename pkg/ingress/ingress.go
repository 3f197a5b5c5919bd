// Package ingress receives Mailchimp audience and Mailchimp Transactional
// (Mandrill) webhooks and publishes each payload unit, byte-for-byte, to
// mailchimp.raw. It answers 2xx only once Kafka acknowledged the write.
package ingress

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/metrics"
)

// Body limits. Mailchimp documents none for audience webhooks (they are a few
// hundred bytes); Mandrill documents at most 1000 events per batch.
const (
	MaxListBody     = 1 << 20
	MaxMandrillBody = 32 << 20
)

// Publisher writes records durably; it returns once every record is
// acknowledged or one failed.
type Publisher interface {
	Publish(ctx context.Context, recs ...*kgo.Record) error
}

// Check is a named readiness probe.
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// Config is what the handler needs.
type Config struct {
	Sources        *config.Sources
	Topic          string // mailchimp.raw
	ProduceTimeout time.Duration
	Log            *zap.Logger
	Ready          []Check
	Metrics        *metrics.Pipeline // nil: none
	now            func() time.Time
}

type handler struct {
	cfg Config
	pub Publisher
}

// NewHandler returns the ingress HTTP API.
func NewHandler(cfg Config, pub Publisher) http.Handler {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 8 * time.Second
	}
	h := &handler{cfg: cfg, pub: pub}
	mux := http.NewServeMux()
	// GET also answers HEAD: Mailchimp validates the URL with a GET.
	mux.HandleFunc("GET /webhooks/mailchimp/{source}/{secret}", h.listValidate)
	mux.HandleFunc("POST /webhooks/mailchimp/{source}/{secret}", h.listPost)
	mux.HandleFunc("HEAD /webhooks/mandrill/{source}", h.mandrillHead)
	mux.HandleFunc("POST /webhooks/mandrill/{source}", h.mandrillPost)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", ReadyHandler(cfg.Ready))
	return mux
}

// ReadyHandler answers 200 when every check passes, else 503 naming the failures.
func ReadyHandler(checks []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := map[string]string{}
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				failed[c.Name] = err.Error()
			}
		}
		if len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

type problem struct {
	status int
	msg    string
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		return id
	}
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// listSource authenticates an audience webhook URL. Unknown sources and
// sources without a secret are 404; a wrong secret is 401.
func (h *handler) listSource(r *http.Request) (config.Source, *problem) {
	src, ok := h.cfg.Sources.Get(r.PathValue("source"))
	if !ok || src.WebhookSecret == "" {
		return config.Source{}, &problem{http.StatusNotFound, "unknown source"}
	}
	if subtle.ConstantTimeCompare([]byte(r.PathValue("secret")), []byte(src.WebhookSecret)) != 1 {
		return config.Source{}, &problem{http.StatusUnauthorized, "bad webhook secret"}
	}
	return src, nil
}

func (h *handler) listValidate(w http.ResponseWriter, r *http.Request) {
	if _, p := h.listSource(r); p != nil {
		h.fail(w, r, "", p, mailchimp.KindListWebhook, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) listPost(w http.ResponseWriter, r *http.Request) {
	rid := requestID(r)
	w.Header().Set("X-Request-Id", rid)
	src, p := h.listSource(r)
	if p != nil {
		h.fail(w, r, "", p, mailchimp.KindListWebhook, rid)
		return
	}
	body, p := readBody(w, r, MaxListBody)
	if p != nil {
		h.fail(w, r, src.ID, p, mailchimp.KindListWebhook, rid)
		return
	}
	hook, err := mailchimp.ParseListWebhook(body)
	if err != nil {
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, err.Error()}, mailchimp.KindListWebhook, rid)
		return
	}
	rec := h.record(src.ID, mailchimp.KindListWebhook, rid, hook.PartitionKey(), body)
	h.publish(w, r, src.ID, mailchimp.KindListWebhook, rid, rec)
}

func (h *handler) mandrillHead(w http.ResponseWriter, r *http.Request) {
	src, ok := h.cfg.Sources.Get(r.PathValue("source"))
	if !ok || src.MandrillWebhookKey == "" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) mandrillPost(w http.ResponseWriter, r *http.Request) {
	const kind = mailchimp.KindMandrillEvent
	rid := requestID(r)
	w.Header().Set("X-Request-Id", rid)
	src, ok := h.cfg.Sources.Get(r.PathValue("source"))
	if !ok || src.MandrillWebhookKey == "" {
		h.fail(w, r, "", &problem{http.StatusNotFound, "unknown source"}, kind, rid)
		return
	}
	body, p := readBody(w, r, MaxMandrillBody)
	if p != nil {
		h.fail(w, r, src.ID, p, kind, rid)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, "form: " + err.Error()}, kind, rid)
		return
	}
	sig := r.Header.Get(mailchimp.MandrillSignatureHdr)
	if sig == "" {
		h.fail(w, r, src.ID, &problem{http.StatusUnauthorized, "missing " + mailchimp.MandrillSignatureHdr}, kind, rid)
		return
	}
	events, present := form[mailchimp.MandrillEventsField]
	if !present || len(events) != 1 {
		// Verify before describing the body to an unauthenticated caller.
		if !mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, src.MandrillWebhookKey, form, sig) {
			h.fail(w, r, src.ID, &problem{http.StatusForbidden, "bad signature"}, kind, rid)
			return
		}
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, "want exactly one mandrill_events field"}, kind, rid)
		return
	}
	units, err := mailchimp.SplitMandrillBatch(events[0])
	valid := mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, src.MandrillWebhookKey, form, sig) ||
		// Mandrill's validation POST is an empty batch signed with a fixed key.
		(err == nil && len(units) == 0 && mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, mailchimp.MandrillValidationKey, form, sig))
	if !valid {
		h.fail(w, r, src.ID, &problem{http.StatusForbidden, "bad signature"}, kind, rid)
		return
	}
	if err != nil {
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, err.Error()}, kind, rid)
		return
	}
	if len(units) > mailchimp.MandrillMaxBatch {
		h.fail(w, r, src.ID, &problem{http.StatusRequestEntityTooLarge, "more than 1000 events in one batch"}, kind, rid)
		return
	}
	recs := make([]*kgo.Record, len(units))
	for i, u := range units {
		recs[i] = h.record(src.ID, kind, rid, mandrillKey(u), u)
	}
	h.publish(w, r, src.ID, kind, rid, recs...)
}

// mandrillKey keys an event by message, leniently: an event the mapper will
// dead-letter still needs a key. It decodes the two ids only: decoding whole
// events here was half of a 1000-event batch's CPU.
func mandrillKey(raw []byte) string {
	var ids struct {
		ID  string `json:"_id"`
		Msg struct {
			ID string `json:"_id"`
		} `json:"msg"`
	}
	if json.Unmarshal(raw, &ids) == nil {
		if e := (mailchimp.MandrillEvent{ID: ids.ID, Msg: mailchimp.MandrillMsg{ID: ids.Msg.ID}}); e.MessageID() != "" {
			return e.PartitionKey()
		}
	}
	return "m:"
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *problem) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &problem{http.StatusRequestEntityTooLarge, "body over the limit"}
	case err != nil:
		return nil, &problem{http.StatusBadRequest, "read body: " + err.Error()}
	}
	return body, nil
}

func (h *handler) record(source, kind, rid, key string, value []byte) *kgo.Record {
	return &kgo.Record{
		Topic: h.cfg.Topic,
		Key:   []byte(source + "/" + key),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(source)},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(h.cfg.now().UTC().Format(time.RFC3339Nano))},
			{Key: kafka.HeaderRequestID, Value: []byte(rid)},
		},
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
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not stored, retry later", "request_id": rid})
			h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, "503")
			return
		}
	}
	h.cfg.Log.Info("accepted", zap.String("source", source), zap.String("kind", kind),
		zap.String("request_id", rid), zap.Int("units", len(recs)))
	writeJSON(w, http.StatusOK, map[string]any{"accepted": len(recs), "request_id": rid})
	h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, "200")
	h.cfg.Metrics.Add(metrics.IngressUnits, float64(len(recs)), source, kind)
}

// fail answers a refused request. It logs the route, never the path: the
// path of an audience webhook holds its secret.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, source string, p *problem, kind, rid string) {
	h.cfg.Log.Info("refused", zap.String("source", source), zap.String("kind", kind), zap.String("request_id", rid),
		zap.Int("status", p.status), zap.String("reason", p.msg), zap.String("route", r.Pattern))
	writeJSON(w, p.status, map[string]string{"error": p.msg, "request_id": rid})
	h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, strconv.Itoa(p.status))
}

// KafkaPublisher publishes through a franz-go client (acks=all, idempotent:
// franz-go's defaults, which the client must not override).
type KafkaPublisher struct {
	Client *kgo.Client
}

// Publish produces recs and waits for every acknowledgement.
func (p KafkaPublisher) Publish(ctx context.Context, recs ...*kgo.Record) error {
	return p.Client.ProduceSync(ctx, recs...).FirstErr()
}
