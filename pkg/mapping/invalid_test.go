package mapping_test

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
)

// open is a Mandrill open of ts to email, JSON-escaped as given.
func open(ts, email string) string {
	return `{"event":"open","ts":` + ts + `,"_id":"m1","ip":"192.0.2.44","msg":{"_id":"m1","email":"` + email + `","subject":"s"}}`
}

// TestMapInvalid: payloads that parse but cannot be believed (an event time
// out of range of their receipt, an address unfit for Heap) map to an
// ErrMalformed the mapper dead-letters, whose reason says what is wrong
// without quoting the address.
func TestMapInvalid(t *testing.T) {
	const ok = "jordan.lee@example.com"
	const outOfRange = " out of range (before 2000 or more than a day ahead)"
	cleaned := func(fired, email string) string {
		return url.Values{"type": {"cleaned"}, "fired_at": {fired}, "data[reason]": {"hard"}, "data[email]": {email}}.Encode()
	}
	member := func(email, ts string) string {
		return `{"campaign_id":"c1","list_id":"l1","email_address":"` + email + `","activity":[{"action":"open","timestamp":"` + ts + `"}]}`
	}
	// lineage was received at 2026-10-05T08:00:00Z: a day ahead is 1791273600.
	tests := []struct {
		name, kind, raw string
		want            string // the error's text ends with it
		wantOutOfRange  bool
	}{
		{name: "mandrill ts int64 max (was 1969)", kind: mailchimp.KindMandrillEvent, raw: open("9223372036854775807", ok),
			want: "mandrill event open: ts: 9223372036854775807" + outOfRange, wantOutOfRange: true},
		{name: "mandrill ts whose milliseconds wrap to 2025", kind: mailchimp.KindMandrillEvent, raw: open("18446745833123463", ok),
			want: "mandrill event open: ts: 18446745833123463" + outOfRange, wantOutOfRange: true},
		{name: "mandrill ts in year 10000", kind: mailchimp.KindMandrillEvent, raw: open("253402300800", ok),
			want: "mandrill event open: ts: 253402300800" + outOfRange, wantOutOfRange: true},
		{name: "mandrill ts -1", kind: mailchimp.KindMandrillEvent, raw: open("-1", ok),
			want: "mandrill event open: ts: -1" + outOfRange, wantOutOfRange: true},
		{name: "mandrill ts 1e30", kind: mailchimp.KindMandrillEvent, raw: open("1e30", ok),
			want: "of type int64"},
		{name: "mandrill ts in 1999", kind: mailchimp.KindMandrillEvent, raw: open("946684799", ok),
			want: "mandrill event open: ts: 946684799" + outOfRange, wantOutOfRange: true},
		{name: "mandrill ts a day and a second ahead", kind: mailchimp.KindMandrillEvent, raw: open("1791273601", ok),
			want: "mandrill event open: ts: 1791273601" + outOfRange, wantOutOfRange: true},
		{name: "mandrill email with a control character", kind: mailchimp.KindMandrillEvent, raw: open("1759413912", `jordan.\u0007lee@example.com`),
			want: "mandrill event open: msg.email: control character at byte 7"},
		{name: "mandrill email with DEL", kind: mailchimp.KindMandrillEvent, raw: open("1759413912", "jordan.\x7flee@example.com"),
			want: "mandrill event open: msg.email: control character at byte 7"},
		{name: "mandrill email with a C1 control", kind: mailchimp.KindMandrillEvent, raw: open("1759413912", "jordan.\u0085lee@example.com"),
			want: "mandrill event open: msg.email: control character at byte 7"},
		{name: "mandrill email not UTF-8", kind: mailchimp.KindMandrillEvent, raw: open("1759413912", "jordan.\xfflee@example.com"),
			want: "mandrill event open: msg.email: invalid UTF-8 (U+FFFD) at byte 7"},
		{name: "list webhook fired in 1999", kind: mailchimp.KindListWebhook, raw: cleaned("1999-12-31 23:59:59", ok),
			want: "list webhook cleaned: fired_at: 1999-12-31T23:59:59Z" + outOfRange, wantOutOfRange: true},
		{name: "list webhook fired in 9999", kind: mailchimp.KindListWebhook, raw: cleaned("9999-12-31 23:59:59", ok),
			want: "list webhook cleaned: fired_at: 9999-12-31T23:59:59Z" + outOfRange, wantOutOfRange: true},
		{name: "list webhook email with a control character", kind: mailchimp.KindListWebhook, raw: cleaned("2026-10-02 14:21:09", "jordan.\x00lee@example.com"),
			want: "list webhook cleaned: data[email]: control character at byte 7"},
		{name: "list webhook email not UTF-8", kind: mailchimp.KindListWebhook, raw: cleaned("2026-10-02 14:21:09", "jordan.\xc3lee@example.com"),
			want: "list webhook cleaned: data[email]: invalid UTF-8 at byte 7"},
		{name: "upemail new address with a control character", kind: mailchimp.KindListWebhook,
			raw:  url.Values{"type": {"upemail"}, "fired_at": {"2026-10-02 14:21:09"}, "data[old_email]": {ok}, "data[new_email]": {"jordan.\nlee@example.com"}}.Encode(),
			want: "list webhook upemail: data[new_email]: control character at byte 7"},
		{name: "activity timestamp in year 10000 UTC", kind: mailchimp.KindEmailActivity, raw: member(ok, "9999-12-31T23:59:59-23:59"),
			want: "email-activity member: activity[0].timestamp: 10000-01-01T23:58:59Z" + outOfRange, wantOutOfRange: true},
		{name: "activity email with a control character", kind: mailchimp.KindEmailActivity, raw: member(`jordan.\u001flee@example.com`, "2026-10-02T14:20:58+00:00"),
			want: "email-activity member: email_address: control character at byte 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := acmeWithSends(t)
			got, err := mapping.Map(src, tt.kind, []byte(tt.raw), lineage)
			if err == nil {
				t.Fatalf("Map() = %+v, want an error", got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) || !strings.HasSuffix(err.Error(), tt.want) {
				t.Fatalf("Map() error = %q, want an ErrMalformed ending %q", err, tt.want)
			}
			if errors.Is(err, mailchimp.ErrOutOfRange) != tt.wantOutOfRange {
				t.Errorf("errors.Is(%v, ErrOutOfRange) = %v, want %v", err, !tt.wantOutOfRange, tt.wantOutOfRange)
			}
			for _, part := range []string{"jordan", "example.com", "@"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("reason %q quotes the address (%q)", err, part)
				}
			}
			if diff := cmp.Diff(mapping.Result{}, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Map() returned a partial result with its error:\n%s", diff)
			}
			evs := make([]events.Event, 1, 4)
			if _, grown, err := mapping.MapAppend(evs, &src, tt.kind, []byte(tt.raw), lineage); err == nil || len(grown) != 1 {
				t.Errorf("MapAppend() = %d events, error %v; want the 1 given back and an error", len(grown), err)
			}
		})
	}
}

// TestMapTimeBounds: the edges of the range, and a receipt that is not
// known (zero: the year 9999 is the only upper bound).
func TestMapTimeBounds(t *testing.T) {
	tests := []struct {
		name string
		ts   string
		lin  events.Lineage
		ok   bool
	}{
		{name: "first second of 2000", ts: "946684800", lin: lineage, ok: true},
		{name: "exactly a day ahead", ts: "1791273600", lin: lineage, ok: true},
		{name: "a day and a second ahead", ts: "1791273601", lin: lineage},
		{name: "far ahead, receipt unknown", ts: "253402300799", lin: events.Lineage{}, ok: true},
		{name: "year 10000, receipt unknown", ts: "253402300800", lin: events.Lineage{}},
		{name: "int64 max, receipt unknown", ts: "9223372036854775807", lin: events.Lineage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := mapping.Map(acme(t), mailchimp.KindMandrillEvent, []byte(open(tt.ts, "a@example.com")), tt.lin)
			if tt.ok != (err == nil) {
				t.Fatalf("Map() = %+v, %v; want ok=%v", res, err, tt.ok)
			}
			if tt.ok && (len(res.Events) != 1 || res.Events[0].Time.Unix() != mustAtoi(t, tt.ts)) {
				t.Errorf("Map() = %+v, want one event at %s", res.Events, tt.ts)
			}
		})
	}
}

// TestMapMandrillBatchPerUnit: a batch's units map one by one, so one bad
// unit is refused alone and the others map as they would without it.
func TestMapMandrillBatchPerUnit(t *testing.T) {
	good := fixtures.Read("mandrill/events.json")
	bad := []string{open("18446745833123463", "x@example.com"), open("1759413912", `x\u0000@example.com`)}
	batch := strings.Replace(string(good), "[", "["+bad[0]+",", 1)
	batch = batch[:strings.LastIndex(batch, "]")] + "," + bad[1] + "]"
	units, err := mailchimp.SplitMandrillBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := mailchimp.SplitMandrillBatch(string(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(alone)+2 {
		t.Fatalf("%d units, want %d", len(units), len(alone)+2)
	}
	src := acmeWithSends(t)
	var refused []int
	var mapped []events.Event
	for i, u := range units {
		res, err := mapping.Map(src, mailchimp.KindMandrillEvent, u, lineage)
		if err != nil {
			refused = append(refused, i)
			continue
		}
		mapped = append(mapped, res.Events...)
	}
	if want := []int{0, len(units) - 1}; !cmp.Equal(refused, want) {
		t.Errorf("units %v refused, want %v", refused, want)
	}
	var want []events.Event
	for _, u := range alone {
		want = append(want, mapOK(t, src, mailchimp.KindMandrillEvent, u).Events...)
	}
	if len(want) == 0 {
		t.Fatal("the fixture maps to nothing")
	}
	if diff := cmp.Diff(want, mapped); diff != "" {
		t.Errorf("good units map differently beside bad ones (-alone +beside):\n%s", diff)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
