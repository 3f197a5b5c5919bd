package mailchimp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Mandrill limits and constants (docs/ARCHITECTURE.md §6.3).
const (
	MandrillMaxBatch      = 1000
	MandrillEventsField   = "mandrill_events"
	MandrillSignatureHdr  = "X-Mandrill-Signature"
	MandrillValidationKey = "test-webhook"
)

// Mandrill event names.
const (
	MandrillSend       = "send"
	MandrillOpen       = "open"
	MandrillClick      = "click"
	MandrillHardBounce = "hard_bounce"
	MandrillSoftBounce = "soft_bounce"
)

// MandrillSignature computes X-Mandrill-Signature: base64(HMAC-SHA1(key,
// url + each POST key and value, sorted by key)).
func MandrillSignature(registeredURL, key string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(registeredURL)
	for _, k := range keys {
		for _, v := range form[k] {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(key))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// VerifyMandrillSignature compares sig with the expected signature in constant time.
func VerifyMandrillSignature(registeredURL, key string, form url.Values, sig string) bool {
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || sig == "" {
		return false
	}
	want, _ := base64.StdEncoding.DecodeString(MandrillSignature(registeredURL, key, form))
	return hmac.Equal(got, want)
}

// SplitMandrillBatch returns each event object of a mandrill_events array
// byte-for-byte as received.
func SplitMandrillBatch(events string) ([]json.RawMessage, error) {
	dec := json.NewDecoder(strings.NewReader(events))
	var raw []json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, malformed("mandrill_events: %v", err)
	}
	if raw == nil {
		return nil, malformed("mandrill_events: not an array")
	}
	// More() is false before a stray ']' or '}', so ask for the next token:
	// only the end of input is fine.
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("mandrill_events: trailing data")
	}
	for i, r := range raw {
		if t := bytes.TrimSpace(r); len(t) == 0 || t[0] != '{' {
			return nil, malformed("mandrill_events[%d]: not an object", i)
		}
	}
	return raw, nil
}

// MandrillEvent is one Mailchimp Transactional webhook event. Sync events
// (type instead of event) parse with an empty Event and are ignored.
type MandrillEvent struct {
	Event string      `json:"event"`
	Type  string      `json:"type"`
	TS    int64       `json:"ts"`
	ID    string      `json:"_id"`
	IP    string      `json:"ip"`
	URL   string      `json:"url"`
	Msg   MandrillMsg `json:"msg"`
}

// MandrillMsg is the message an event is about.
type MandrillMsg struct {
	ID      string   `json:"_id"`
	TS      int64    `json:"ts"`
	Email   string   `json:"email"`
	Subject string   `json:"subject"`
	Sender  string   `json:"sender"`
	Tags    []string `json:"tags"`
	State   string   `json:"state"`
}

// Time is the event's own time, converted only when it is in
// EventTimeRange(receivedAt) (UnixTime): ts is outside input.
func (e MandrillEvent) Time(receivedAt time.Time) (time.Time, error) {
	return UnixTime(e.TS, receivedAt)
}

// MessageID is the message id, from msg._id or the event's _id.
func (e MandrillEvent) MessageID() string {
	if e.Msg.ID != "" {
		return e.Msg.ID
	}
	return e.ID
}

// ParseMandrillEvent parses one event object.
func ParseMandrillEvent(raw []byte) (MandrillEvent, error) {
	e, ok := fastMandrillEvent(raw)
	if !ok {
		// Not the plain shape the fast path reads: encoding/json decides.
		// Into a variable of its own: &e would put e on the heap every time.
		var slow MandrillEvent
		if err := json.Unmarshal(raw, &slow); err != nil {
			return MandrillEvent{}, malformed("mandrill event: %v", err)
		}
		e = slow
	}
	if e.Event == "" {
		if e.Type != "" {
			return e, nil // sync event (blacklist/whitelist): nothing to map
		}
		return MandrillEvent{}, malformed("mandrill event: missing event")
	}
	if e.TS == 0 {
		return MandrillEvent{}, malformed("mandrill event %s: missing ts", e.Event)
	}
	// A ts no receipt makes believable (before 2000, past the year 9999)
	// is refused here: every event parsed has a time that converts.
	if _, err := UnixTime(e.TS, time.Time{}); err != nil {
		return MandrillEvent{}, invalid(err, "mandrill event %s: ts", e.Event)
	}
	if e.MessageID() == "" {
		return MandrillEvent{}, malformed("mandrill event %s: missing _id", e.Event)
	}
	if strings.TrimSpace(e.Msg.Email) == "" {
		return MandrillEvent{}, malformed("mandrill event %s: missing msg.email", e.Event)
	}
	return e, nil
}

// PartitionKey keeps one message's events in order.
func (e MandrillEvent) PartitionKey() string { return "m:" + e.MessageID() }
