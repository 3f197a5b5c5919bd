package events

import (
	"fmt"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// Codec encodes events as Avro single-object encoding. It is safe for
// concurrent use; build it once per process.
type Codec struct {
	avro *goavro.Codec
}

// NewCodec compiles the embedded schema.
func NewCodec() (*Codec, error) {
	c, err := goavro.NewCodec(schemas.HeapEmailEvent)
	if err != nil {
		return nil, fmt.Errorf("events: compile schema: %w", err)
	}
	return &Codec{avro: c}, nil
}

// Encode returns the single-object encoding of e.
func (c *Codec) Encode(e Event) ([]byte, error) {
	b, err := c.avro.SingleFromNative(nil, toNative(e))
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", e.ID, err)
	}
	return b, nil
}

// Decode parses a single-object encoded event.
func (c *Codec) Decode(b []byte) (Event, error) {
	native, rest, err := c.avro.NativeFromSingle(b)
	if err != nil {
		return Event{}, fmt.Errorf("events: decode: %w", err)
	}
	if len(rest) > 0 {
		return Event{}, fmt.Errorf("events: decode: %d bytes after the event", len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return Event{}, fmt.Errorf("events: decode: unexpected %T", native)
	}
	return fromNative(m), nil
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
