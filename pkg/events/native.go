package events

import "github.com/linkedin/goavro/v2"

// Native is e in goavro's native form of the current schema: what tests
// and tools hand goavro to check the codec against it.
func Native(e Event) map[string]any {
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

func optional(s string) any {
	if s == "" {
		return nil
	}
	return goavro.Union("string", s)
}
