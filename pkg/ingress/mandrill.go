package ingress

// The Mandrill (Mailchimp Transactional) webhook: a form whose
// mandrill_events field is a JSON array of up to 1000 events, signed with
// X-Mandrill-Signature. The signature is checked before the batch is
// parsed; each event becomes one record, and an event too large to ever be
// a record is dead-lettered alone while the rest of the batch is accepted.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/requestid"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// DefaultMaxUnitBytes is the largest event written to mailchimp.raw: under
// Kafka's default message.max.bytes (1 MiB) and franz-go's default batch
// size, with room for the key and headers.
const DefaultMaxUnitBytes = 900 << 10

// dlqKeep is how much of an oversized event its dead letter keeps: enough
// to see what it was, small enough to be a record.
const dlqKeep = 64 << 10

// errBadSignature answers an unknown source, a source without Mandrill
// webhooks and a wrong signature alike.
var errBadSignature = &problem{http.StatusForbidden, "bad signature"}

// mandrillHead answers Mandrill's URL check. It answers every source alike.
func (h *handler) mandrillHead(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
}

func (h *handler) mandrillPost(w http.ResponseWriter, r *http.Request) {
	const kind = mailchimp.KindMandrillEvent
	rid := requestid.From(r)
	w.Header().Set(requestid.Header, rid)
	src, ok := h.cfg.Sources.Get(r.PathValue("source"))
	if !ok || src.MandrillWebhookKey == "" {
		h.fail(w, r, "", errBadSignature, kind, rid)
		return
	}
	b := getBatch()
	bd := &body{buf: b.body, b: h.budget}
	// Every record refers to the body's bytes: they go back to the pool and
	// the budget only after Publish returned, when the producer is done.
	defer func() {
		b.body = bd.buf
		bd.release()
		putBatch(b)
	}()
	if p := bd.read(w, r, MaxMandrillBody); p != nil {
		h.fail(w, r, src.ID, p, kind, rid)
		return
	}
	events, p := verifiedEvents(r.Context(), h.budget, src, bd.buf, r.Header.Get(mailchimp.MandrillSignatureHdr))
	if p != nil {
		h.fail(w, r, src.ID, p, kind, rid)
		return
	}
	units, err := mailchimp.ScanMandrillBatch(events, b.units[:0])
	b.units = units[:0]
	if err != nil {
		h.fail(w, r, src.ID, &problem{http.StatusBadRequest, err.Error()}, kind, rid)
		return
	}
	if len(units) > mailchimp.MandrillMaxBatch {
		h.fail(w, r, src.ID, &problem{http.StatusRequestEntityTooLarge, "more than 1000 events in one batch"}, kind, rid)
		return
	}
	recs := b.records(h.cfg.Topic, src.ID, h.headers(src.ID, kind, rid), units)
	recs = h.divertOversized(recs)
	h.publish(w, r, src.ID, kind, rid, recs...)
}

// verifiedEvents returns the mandrill_events value of a Mandrill webhook
// body once its signature holds for the source's key (or, for Mandrill's
// validation post, an empty batch signed with its fixed key). Nothing of
// the body is parsed beyond the form before that.
func verifiedEvents(ctx context.Context, b *budget, src source.Source, body []byte, sig string) ([]byte, *problem) {
	if sig == "" {
		return nil, &problem{http.StatusUnauthorized, "missing " + mailchimp.MandrillSignatureHdr}
	}
	var events []byte
	var verify func(key string) bool
	if ev, single, err := mailchimp.UnescapeMandrillForm(body); single {
		if err != nil {
			return nil, &problem{http.StatusBadRequest, "form: " + err.Error()}
		}
		events = ev
		verify = func(key string) bool { return mailchimp.VerifyMandrillEvents(src.MandrillWebhookURL, key, events, sig) }
	} else {
		// Decoding a general form copies the body about twice over: that
		// memory comes out of the budget too, for as long as it is held.
		if err := b.take(ctx, 2*int64(len(body))); err != nil {
			return nil, &problem{http.StatusServiceUnavailable, err.Error()}
		}
		defer b.give(2 * int64(len(body)))
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, &problem{http.StatusBadRequest, "form: " + err.Error()}
		}
		if !mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, src.MandrillWebhookKey, form, sig) &&
			!mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, mailchimp.MandrillValidationKey, form, sig) {
			return nil, errBadSignature
		}
		values, present := form[mailchimp.MandrillEventsField]
		if !present || len(values) != 1 {
			return nil, &problem{http.StatusBadRequest, "want exactly one mandrill_events field"}
		}
		events = []byte(values[0])
		verify = func(key string) bool {
			return mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, key, form, sig)
		}
	}
	if verify(src.MandrillWebhookKey) {
		return events, nil
	}
	// Mandrill's validation post is an empty batch signed with a fixed key.
	if bytes.Equal(bytes.TrimSpace(events), []byte("[]")) && verify(mailchimp.MandrillValidationKey) {
		return events, nil
	}
	return nil, errBadSignature
}

// divertOversized replaces each record whose event is over MaxUnitBytes by
// its dead letter in DLQTopic: the event's first dlqKeep bytes, its size and
// digest in the reason. One such event no longer costs its batch (Kafka
// would refuse the record, and the batch's retry, for ever).
func (h *handler) divertOversized(recs []*kgo.Record) []*kgo.Record {
	for i, r := range recs {
		if len(r.Value) <= h.cfg.MaxUnitBytes {
			continue
		}
		sum := sha256.Sum256(r.Value)
		reason := fmt.Sprintf("oversized: event of %d bytes over the %d-byte record limit; value cut to its first %d bytes (sha256 %x)",
			len(r.Value), h.cfg.MaxUnitBytes, dlqKeep, sum[:8])
		cut := *r
		cut.Value = r.Value[:dlqKeep]
		dl := kafka.DeadLetter(&cut, h.cfg.DLQTopic, reason)
		dl.Headers = dl.Headers[:len(dl.Headers)-1] // not from a topic yet: no origin
		recs[i] = dl
		h.cfg.Log.Warn("event dead-lettered at ingress", zapReason(reason))
	}
	return recs
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
		b.body = nil
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
