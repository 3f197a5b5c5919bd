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
	"sync"
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
// acknowledged or failed, and keeps no record nor any of its bytes after it
// returned (the handler reuses them).
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
	b := getBatch()
	// Every record refers to b's bytes: b goes back to the pool only after
	// Publish returned, when the producer is done with them.
	defer putBatch(b)
	var p *problem
	if b.body, p = readBodyInto(w, r, MaxMandrillBody, b.body); p != nil {
		h.fail(w, r, src.ID, p, kind, rid)
		return
	}
	events, verify, p := mandrillEvents(src, b.body, r.Header.Get(mailchimp.MandrillSignatureHdr))
	if p != nil {
		h.fail(w, r, src.ID, p, kind, rid)
		return
	}
	units, err := mailchimp.ScanMandrillBatch(events, b.units[:0])
	b.units = units[:0]
	valid := verify(src.MandrillWebhookKey) ||
		// Mandrill's validation POST is an empty batch signed with a fixed key.
		(err == nil && len(units) == 0 && verify(mailchimp.MandrillValidationKey))
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
	h.publish(w, r, src.ID, kind, rid, b.records(h.cfg.Topic, src.ID, h.headers(src.ID, kind, rid), units)...)
}

// mandrillEvents returns the mandrill_events value of a Mandrill webhook body
// and how to check its signature against a key. A body that is the one
// field, as Mandrill sends it, is unescaped in place and signed as is;
// another goes through url.ParseQuery and MandrillSignature.
func mandrillEvents(src config.Source, body []byte, sig string) ([]byte, func(key string) bool, *problem) {
	events, single, err := mailchimp.UnescapeMandrillForm(body)
	if single {
		switch {
		case err != nil:
			return nil, nil, &problem{http.StatusBadRequest, "form: " + err.Error()}
		case sig == "":
			return nil, nil, &problem{http.StatusUnauthorized, "missing " + mailchimp.MandrillSignatureHdr}
		}
		return events, func(key string) bool {
			return mailchimp.VerifyMandrillEvents(src.MandrillWebhookURL, key, events, sig)
		}, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, nil, &problem{http.StatusBadRequest, "form: " + err.Error()}
	}
	if sig == "" {
		return nil, nil, &problem{http.StatusUnauthorized, "missing " + mailchimp.MandrillSignatureHdr}
	}
	verify := func(key string) bool {
		return mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, key, form, sig)
	}
	values, present := form[mailchimp.MandrillEventsField]
	if !present || len(values) != 1 {
		// Verify before describing the body to an unauthenticated caller.
		if !verify(src.MandrillWebhookKey) {
			return nil, nil, &problem{http.StatusForbidden, "bad signature"}
		}
		return nil, nil, &problem{http.StatusBadRequest, "want exactly one mandrill_events field"}
	}
	return []byte(values[0]), verify, nil
}

// mandrillBatch holds one Mandrill request's buffers, reused across
// requests: a 1000-event batch is ~1 MB of body and 1000 records.
type mandrillBatch struct {
	body  []byte
	units []mailchimp.MandrillUnit
	recs  []kgo.Record
	ptrs  []*kgo.Record
	keys  []byte
}

// maxPooledBody bounds what the pool keeps: a rare huge body is not held.
const maxPooledBody = 4 << 20

var batches = sync.Pool{New: func() any { return new(mandrillBatch) }}

func getBatch() *mandrillBatch { return batches.Get().(*mandrillBatch) }

func putBatch(b *mandrillBatch) {
	if cap(b.body) > maxPooledBody {
		return
	}
	clear(b.recs) // drop references to values, contexts and the producer's state
	b.units = b.units[:0]
	batches.Put(b)
}

// records are one record per event, keyed by message ("m:" + message id, or
// "m:" when it has none: an event the mapper will dead-letter still needs a
// key), all sharing headers.
func (b *mandrillBatch) records(topic, source string, headers []kgo.RecordHeader, units []mailchimp.MandrillUnit) []*kgo.Record {
	const sep = "/m:"
	n := 0
	for _, u := range units {
		n += len(source) + len(sep) + len(u.MessageID)
	}
	if cap(b.keys) < n {
		b.keys = make([]byte, 0, n)
	}
	if cap(b.recs) < len(units) {
		b.recs = make([]kgo.Record, len(units))
		b.ptrs = make([]*kgo.Record, len(units))
	}
	keys := b.keys[:0]
	recs, ptrs := b.recs[:len(units)], b.ptrs[:len(units)]
	for i, u := range units {
		at := len(keys)
		keys = append(append(append(keys, source...), sep...), u.MessageID...)
		recs[i] = kgo.Record{Topic: topic, Key: keys[at:len(keys):len(keys)], Value: u.Raw, Headers: headers}
		ptrs[i] = &recs[i]
	}
	return ptrs
}

// readBodyInto reads the body into buf's storage, growing it as needed.
func readBodyInto(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, *problem) {
	if n := r.ContentLength; n > 0 && n < limit && int64(cap(buf)) <= n {
		buf = make([]byte, 0, n+1) // +1: the read that sees EOF needs room
	}
	buf = buf[:0]
	rd := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var tooBig *http.MaxBytesError
		switch {
		case err == io.EOF:
			return buf, nil
		case errors.As(err, &tooBig):
			return buf, &problem{http.StatusRequestEntityTooLarge, "body over the limit"}
		case err != nil:
			return buf, &problem{http.StatusBadRequest, "read body: " + err.Error()}
		}
	}
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
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not stored, retry later", "request_id": rid})
			h.cfg.Metrics.Inc(metrics.IngressRequests, source, kind, "503")
			return
		}
	}
	h.cfg.Log.Info("accepted", zap.String("source", source), zap.String("kind", kind),
		zap.String("request_id", rid), zap.Int("units", len(recs)))
	writeJSON(w, http.StatusOK, accepted{Accepted: len(recs), RequestID: rid})
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
