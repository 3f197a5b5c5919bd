package mapper

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
)

// lineageParser reads records' lineage; a batch's records mostly share
// their received-at header (one ingress request, or close in time), so the
// last one parsed is kept rather than parsed again.
type lineageParser struct {
	raw       []byte
	at        time.Time
	requestID string
}

// kindOf is string(b) without a copy for the kinds ingress writes.
func kindOf(b []byte) string {
	for _, k := range [...]string{mailchimp.KindMandrillEvent, mailchimp.KindListWebhook, mailchimp.KindEmailActivity, mailchimp.KindCampaign} {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

func (lp *lineageParser) lineage(r *kgo.Record) events.Lineage {
	lin := events.Lineage{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	// One pass over the headers; the first of a key counts, as in
	// kafka.Header.
	var received []byte
	var seen [4]bool
	for _, h := range r.Headers {
		var i int
		switch h.Key {
		case kafka.HeaderReceivedAt:
			i = 0
		case kafka.HeaderKind:
			i = 1
		case kafka.HeaderRequestID:
			i = 2
		case kafka.HeaderReplaySalt:
			i = 3
		default:
			continue
		}
		if seen[i] {
			continue
		}
		seen[i] = true
		switch i {
		case 0:
			received = h.Value
		case 1:
			lin.Kind = kindOf(h.Value)
		case 2:
			// A Mandrill batch's events share their request id.
			if string(h.Value) != lp.requestID {
				lp.requestID = string(h.Value)
			}
			lin.RequestID = lp.requestID
		case 3:
			lin.Salt = string(h.Value)
		}
	}
	if lp.raw == nil || !bytes.Equal(received, lp.raw) {
		at, _ := time.Parse(time.RFC3339Nano, string(received))
		lp.raw, lp.at = append(lp.raw[:0], received...), at
	}
	at := lp.at
	if at.IsZero() {
		at = r.Timestamp
	}
	// Millisecond precision is what the schema keeps.
	lin.ReceivedAt = at.UTC().Truncate(time.Millisecond)
	return lin
}
