package mapping_test

import (
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// A replay salt changes every id; without one, ids stay what they always
// were (lineage other than the salt never enters the id).
func TestMapReplaySalt(t *testing.T) {
	srcs, err := source.New(source.Source{ID: "acme", HeapAppID: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	src, _ := srcs.Get("acme")
	raw := []byte(`{"event":"open","ts":1759413912,"_id":"m1","msg":{"_id":"m1","email":"a@example.com","subject":"s"}}`)
	ids := func(lin events.Lineage) string {
		t.Helper()
		res, err := mapping.Map(src, mailchimp.KindMandrillEvent, raw, lin)
		if err != nil || len(res.Events) != 1 {
			t.Fatalf("Map: %v, %d events", err, len(res.Events))
		}
		return res.Events[0].ID
	}
	plain := ids(events.Lineage{})
	if got := ids(events.Lineage{Topic: "t", Offset: 9, RequestID: "r"}); got != plain {
		t.Errorf("lineage changed the id: %s != %s", got, plain)
	}
	a, b := ids(events.Lineage{Salt: "a"}), ids(events.Lineage{Salt: "b"})
	if a == plain || b == plain || a == b {
		t.Errorf("salted ids must differ from each other and the plain one: plain %s, a %s, b %s", plain, a, b)
	}
	if again := ids(events.Lineage{Salt: "a"}); again != a {
		t.Errorf("the same salt gave two ids: %s, %s", a, again)
	}
}
