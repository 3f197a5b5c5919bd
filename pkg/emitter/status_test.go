package emitter_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/emitter"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestEmitterRecordsStatus: what Heap accepted is counted per source and
// event name, and what it rejected as the source's heap_rejected dead letters.
func TestEmitterRecordsStatus(t *testing.T) {
	h := newHarness(t)
	// The harness's source ids are fixed: a Redis of this test's own.
	st := status.NewStore(redistest.PrivateClient(t))
	var evs []events.Event
	for i := range 5 {
		evs = append(evs, h.event(i, "acme"))
	}
	click := h.event(5, "acme")
	click.Name, click.URL = events.NameClick, "https://shop.example/"
	poison := h.event(6, "acme")
	poison.Identity = strings.Repeat("p", 300)
	evs = append(evs, click, poison, h.event(0, "beta"), h.event(1, "beta"))
	h.produce(t, evs...)

	stop := h.run(t, 5*time.Second, func(c *emitter.Config) { c.Status = st })
	defer stop()
	ctx := context.Background()
	report := func(src string) status.Report {
		r, err := st.Report(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	testsupport.WaitFor(t, "acme's and beta's counts", waitWithin, func() bool {
		return report("acme").DeliveredTotal() == 6 && report("acme").DeadLettered[status.ReasonHeapRejected] == 1 &&
			report("beta").DeliveredTotal() == 2
	})
	acme := report("acme")
	if acme.Delivered["Open Email"] != 5 || acme.Delivered["Click Email Link"] != 1 {
		t.Errorf("acme delivered %v", acme.Delivered)
	}
	if acme.FirstEventAt == nil || acme.LastEventAt == nil || acme.LastEventAt.Before(*acme.FirstEventAt) {
		t.Errorf("acme first %v, last %v", acme.FirstEventAt, acme.LastEventAt)
	}
	if n := len(report("beta").DeadLettered); n != 0 {
		t.Errorf("beta has %d dead-letter reasons", n)
	}
}
