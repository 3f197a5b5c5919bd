package mapping

import (
	"strings"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
)

// AppendHeapProperties appends the properties Heap gets for e to dst and
// returns the extended slice: Heap's exact property names, in key order (a
// request lists them as encoding/json lists a map's keys), each value cut
// under Heap's length limit (heap.Truncate), empty values left out. ts is
// e.Time as Heap's timestamp (heap.AppendTimestamp), the "Time" property:
// the caller formats it once, for the event's timestamp too.
//
// The properties share e's strings and ts. With room enough in dst it
// allocates nothing, but to join two tags or more.
func AppendHeapProperties(dst []heap.Property, e events.Event, ts string) []heap.Property {
	add := func(k, v string) {
		if v != "" {
			dst = append(dst, heap.Property{Key: k, Value: heap.Truncate(v)})
		}
	}
	add("Bounce Type", e.BounceType)
	add("Campaign ID", e.CampaignID)
	add("Campaign Title", e.CampaignTitle)
	add("IP", e.IP)
	add("List ID", e.ListID)
	add("Subject", e.Subject)
	add("Tags", strings.Join(e.Tags, ","))
	add("Time", ts)
	add("URL", e.URL)
	return dst
}

// HeapProperties is how many properties AppendHeapProperties appends at
// most: room enough for dst.
const HeapProperties = 9
