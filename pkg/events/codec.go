package events

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/linkedin/goavro/v2"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// Codec encodes events as Avro single-object encoding. It is safe for
// concurrent use; build it once per process.
type Codec struct {
	avro   *goavro.Codec
	header []byte // single-object marker c3 01 and the schema's fingerprint
}

// NewCodec compiles the embedded schema and checks the hand-written binary
// encoding (binary.go) against goavro's for it.
func NewCodec() (*Codec, error) {
	c, err := goavro.NewCodec(schemas.HeapEmailEvent)
	if err != nil {
		return nil, fmt.Errorf("events: compile schema: %w", err)
	}
	codec := &Codec{avro: c, header: binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, c.Rabin)}
	probe := Event{ID: "id", SourceID: "s", AppID: "a", Identity: "i", EmailKey: "k", Name: "n",
		Time: time.UnixMilli(1759413912345), CampaignID: "c", CampaignTitle: "t", ListID: "l", IP: "ip", URL: "u",
		BounceType: "b", Subject: "su", Tags: []string{"x", "y"},
		Lineage: Lineage{Topic: "raw", Partition: 3, Offset: 42, Kind: "k", RequestID: "r", ReceivedAt: time.UnixMilli(1759413999999)}}
	want, err := c.SingleFromNative(nil, toNative(probe))
	if err != nil {
		return nil, fmt.Errorf("events: schema check: %w", err)
	}
	if got, _ := codec.Encode(probe); !bytes.Equal(got, want) {
		return nil, fmt.Errorf("events: the hand-written Avro encoding no longer matches the schema: update binary.go")
	}
	return codec, nil
}

// Encode returns the single-object encoding of e.
func (c *Codec) Encode(e Event) ([]byte, error) {
	return c.AppendEncode(make([]byte, 0, len(c.header)+sizeHint(e)), e), nil
}

// AppendEncode appends the single-object encoding of e to dst.
func (c *Codec) AppendEncode(dst []byte, e Event) []byte {
	return appendBinary(append(dst, c.header...), e)
}

// Decode parses a single-object encoded event.
func (c *Codec) Decode(b []byte) (Event, error) { return c.decode(b, false) }

// DecodeView is Decode without a copy: the event's strings share b's
// bytes. Use it only while b stays as it is, and keep no string of it
// after: the emitter reads each polled record once, encoding its event for
// Heap, before its fetched batch is reused.
func (c *Codec) DecodeView(b []byte) (Event, error) { return c.decode(b, true) }

// Route is what routing an encoded event needs: the fields its encoding
// starts with.
type Route struct {
	ID, SourceID, AppID, Identity, Name string
	Time                                time.Time
}

// RouteView reads an event's Route and nothing after it, without a copy:
// its strings share b's bytes, as DecodeView's. Decode may still fail on
// the rest.
func (c *Codec) RouteView(b []byte) (Route, error) {
	body, err := c.body(b)
	if err != nil {
		return Route{}, err
	}
	r := &reader{b: body, whole: view(body)}
	rt, _ := r.route()
	if r.err != nil {
		return Route{}, fmt.Errorf("events: decode: %w", r.err)
	}
	return rt, nil
}

// view is b's bytes as a string, without a copy: read it only while b
// stays as it is.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (c *Codec) decode(b []byte, shared bool) (Event, error) {
	body, err := c.body(b)
	if err != nil {
		return Event{}, err
	}
	whole := view(body)
	if !shared {
		whole = strings.Clone(whole)
	}
	e, rest, err := readBinary(body, whole)
	if err != nil {
		return Event{}, fmt.Errorf("events: decode: %w", err)
	}
	if len(rest) > 0 {
		return Event{}, fmt.Errorf("events: decode: %d bytes after the event", len(rest))
	}
	return e, nil
}

// body is b without its single-object header, which must be this schema's.
func (c *Codec) body(b []byte) ([]byte, error) {
	if len(b) < len(c.header) || !bytes.Equal(b[:len(c.header)], c.header) {
		return nil, fmt.Errorf("events: decode: not a single-object encoded event of this schema")
	}
	return b[len(c.header):], nil
}

func optional(s string) any {
	if s == "" {
		return nil
	}
	return goavro.Union("string", s)
}

func toNative(e Event) map[string]any {
	tags := make([]any, len(e.Tags))
	for i, t := range e.Tags {
		tags[i] = t
	}
	return map[string]any{
		"event_id":       e.ID,
		"source_id":      e.SourceID,
		"heap_app_id":    e.AppID,
		"identity":       e.Identity,
		"email_key":      e.EmailKey,
		"event_name":     e.Name,
		"event_time":     e.Time.UTC(),
		"campaign_id":    optional(e.CampaignID),
		"campaign_title": optional(e.CampaignTitle),
		"list_id":        optional(e.ListID),
		"ip":             optional(e.IP),
		"url":            optional(e.URL),
		"bounce_type":    optional(e.BounceType),
		"subject":        optional(e.Subject),
		"tags":           tags,
		"lineage": map[string]any{
			"topic":       e.Lineage.Topic,
			"partition":   e.Lineage.Partition,
			"offset":      e.Lineage.Offset,
			"kind":        e.Lineage.Kind,
			"request_id":  e.Lineage.RequestID,
			"received_at": e.Lineage.ReceivedAt.UTC(),
		},
	}
}

func str(m map[string]any, k string) string {
	switch v := m[k].(type) {
	case string:
		return v
	case map[string]any:
		s, _ := v["string"].(string)
		return s
	}
	return ""
}

func fromNative(m map[string]any) Event {
	e := Event{
		ID:            str(m, "event_id"),
		SourceID:      str(m, "source_id"),
		AppID:         str(m, "heap_app_id"),
		Identity:      str(m, "identity"),
		EmailKey:      str(m, "email_key"),
		Name:          str(m, "event_name"),
		CampaignID:    str(m, "campaign_id"),
		CampaignTitle: str(m, "campaign_title"),
		ListID:        str(m, "list_id"),
		IP:            str(m, "ip"),
		URL:           str(m, "url"),
		BounceType:    str(m, "bounce_type"),
		Subject:       str(m, "subject"),
	}
	e.Time, _ = m["event_time"].(time.Time)
	e.Time = e.Time.UTC()
	if tags, ok := m["tags"].([]any); ok {
		for _, t := range tags {
			if s, ok := t.(string); ok {
				e.Tags = append(e.Tags, s)
			}
		}
	}
	if l, ok := m["lineage"].(map[string]any); ok {
		e.Lineage.Topic = str(l, "topic")
		e.Lineage.Kind = str(l, "kind")
		e.Lineage.RequestID = str(l, "request_id")
		p, _ := l["partition"].(int32)
		o, _ := l["offset"].(int64)
		e.Lineage.Partition, e.Lineage.Offset = p, o
		e.Lineage.ReceivedAt, _ = l["received_at"].(time.Time)
		e.Lineage.ReceivedAt = e.Lineage.ReceivedAt.UTC()
	}
	return e
}
