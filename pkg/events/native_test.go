package events

import "time"

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

// fromNative is Native's inverse, for tests against goavro's decoding.
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
