package mailchimp_test

import (
	"errors"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

// received is when the payloads of these tests arrived.
var received = time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)

const outOfRange = " out of range (before 2000 or more than a day ahead)"

func TestUnixTime(t *testing.T) {
	tests := []struct {
		name     string
		sec      int64
		received time.Time
		want     time.Time // zero: an error
	}{
		// time.Unix(math.MaxInt64, 0) is in 1969.
		{name: "int64 max", sec: math.MaxInt64, received: received},
		{name: "int64 min", sec: math.MinInt64, received: received},
		// Its milliseconds wrap to 2025-10-02T14:05:12Z.
		{name: "milliseconds wrap to 2025", sec: 18446745833123463, received: received},
		{name: "year 10000", sec: 253402300800, received: received},
		{name: "year 10000, receipt unknown", sec: 253402300800},
		{name: "last second of 9999, receipt unknown", sec: 253402300799, want: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{name: "year 9999 a day after a late receipt", sec: 253402300799, received: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
			want: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{name: "receipt past the year 9999", sec: 253402300800, received: time.Date(9999, 12, 31, 23, 59, 59, 999, time.UTC)},
		{name: "minus one", sec: -1, received: received},
		{name: "zero", sec: 0, received: received},
		{name: "last second of 1999", sec: 946684799, received: received},
		{name: "first second of 2000", sec: 946684800, received: received, want: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "a fixture's ts", sec: 1759413912, received: received, want: time.Date(2025, 10, 2, 14, 5, 12, 0, time.UTC)},
		{name: "a day ahead", sec: received.Unix() + 86400, received: received, want: received.Add(24 * time.Hour)},
		{name: "a day and a second ahead", sec: received.Unix() + 86401, received: received},
		{name: "a day ahead of a receipt with a fraction", sec: received.Unix() + 86400, received: received.Add(999 * time.Millisecond),
			want: received.Add(24 * time.Hour)},
		{name: "receipt before 2000 believes nothing", sec: 946684800, received: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.UnixTime(tt.sec, tt.received)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("UnixTime(%d) = %v, want an error", tt.sec, got)
				}
				if !errors.Is(err, mailchimp.ErrOutOfRange) || !got.IsZero() {
					t.Errorf("UnixTime(%d) = %v, %v; want the zero time and ErrOutOfRange", tt.sec, got, err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("UnixTime(%d) = %v, %v; want %v in UTC", tt.sec, got, err, tt.want)
			}
		})
	}
	_, err := mailchimp.UnixTime(18446745833123463, received)
	if want := "18446745833123463" + outOfRange; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestCheckEventTime(t *testing.T) {
	tests := []struct {
		name     string
		at       time.Time
		received time.Time
		ok       bool
	}{
		{name: "first instant of 2000", at: mailchimp.EarliestEventTime, received: received, ok: true},
		{name: "last nanosecond of 1999", at: mailchimp.EarliestEventTime.Add(-1), received: received},
		{name: "exactly a day ahead", at: received.Add(mailchimp.MaxAhead), received: received, ok: true},
		{name: "a nanosecond more", at: received.Add(mailchimp.MaxAhead + 1), received: received},
		{name: "year 10000", at: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "last second of 9999, receipt unknown", at: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), ok: true},
		{name: "year 0", at: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), received: received},
		{name: "zero time", received: received},
		{name: "another zone", at: time.Date(2026, 10, 6, 11, 0, 0, 0, time.FixedZone("CET", 3600)), received: received, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mailchimp.CheckEventTime(tt.at, tt.received)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckEventTime(%v, %v) = %v, want ok=%v", tt.at, tt.received, err, tt.ok)
			}
			if err != nil && !errors.Is(err, mailchimp.ErrOutOfRange) {
				t.Errorf("error %v does not wrap ErrOutOfRange", err)
			}
		})
	}
}

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		name, email, want string // want: "" for no error
	}{
		{name: "plain", email: "jordan.lee@example.com"},
		{name: "non-ASCII", email: "jördan.lée@exämple.com"},
		{name: "spaces are the normalizer's business", email: " a@example.com "},
		{name: "NUL", email: "jordan.\x00@example.com", want: "control character at byte 7"},
		{name: "bell", email: "jordan.\a@example.com", want: "control character at byte 7"},
		{name: "leading tab", email: "\ta@example.com", want: "control character at byte 0"},
		{name: "trailing newline", email: "a@example.com\n", want: "control character at byte 13"},
		{name: "DEL", email: "a\x7f@example.com", want: "control character at byte 1"},
		{name: "C1 NEL", email: "a\u0085@example.com", want: "control character at byte 1"},
		{name: "C1 CSI after a two-byte rune", email: "é\u009b@example.com", want: "control character at byte 2"},
		{name: "invalid byte", email: "a@ex\xffample.com", want: "invalid UTF-8 at byte 4"},
		{name: "truncated rune", email: "a@example.com\xc3", want: "invalid UTF-8 at byte 13"},
		{name: "overlong encoding", email: "\xc0\xafa@example.com", want: "invalid UTF-8 at byte 0"},
		{name: "surrogate", email: "a\xed\xa0\x80@example.com", want: "invalid UTF-8 at byte 1"},
		{name: "replacement character", email: "a\ufffd@example.com", want: "invalid UTF-8 (U+FFFD) at byte 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mailchimp.CheckAddress(tt.email)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("CheckAddress(%q) = %q, want %q", tt.email, got, tt.want)
			}
		})
	}
}

// checkReason fails when err's text quotes any of the addresses' parts that
// could identify someone.
func checkReason(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if p != "" && strings.Contains(err.Error(), p) {
			t.Errorf("reason %q quotes %q", err, p)
		}
	}
}

func TestMandrillEventValidate(t *testing.T) {
	event := func(ts, email string) string {
		return `{"event":"open","ts":` + ts + `,"_id":"m1","msg":{"_id":"m1","email":"` + email + `"}}`
	}
	const ok = "jordan.lee@example.com"
	tests := []struct {
		name     string
		raw      string
		parseErr string // what the parse error ends with
		err      string // what Validate's error is, after "malformed payload: "
	}{
		{name: "int64 max", raw: event("9223372036854775807", ok), parseErr: "ts: 9223372036854775807" + outOfRange},
		{name: "milliseconds wrap to 2025", raw: event("18446745833123463", ok), parseErr: "ts: 18446745833123463" + outOfRange},
		{name: "year 10000", raw: event("253402300800", ok), parseErr: "ts: 253402300800" + outOfRange},
		{name: "minus one", raw: event("-1", ok), parseErr: "ts: -1" + outOfRange},
		{name: "1999", raw: event("946684799", ok), parseErr: "ts: 946684799" + outOfRange},
		{name: "float 1e30", raw: event("1e30", ok), parseErr: "of type int64"},
		{name: "past int64", raw: event("9223372036854775808", ok), parseErr: "of type int64"},
		{name: "a day and a second ahead", raw: event("1791280801", ok), err: "mandrill event open: ts: 1791280801" + outOfRange},
		{name: "a day ahead", raw: event("1791280800", ok)},
		{name: "control character", raw: event("1759413912", `jordan.lee\u0007@example.com`), err: "mandrill event open: msg.email: control character at byte 10"},
		{name: "C1 control", raw: event("1759413912", "jordan.lee\u0085@example.com"), err: "mandrill event open: msg.email: control character at byte 10"},
		{name: "invalid UTF-8, replaced by encoding/json", raw: event("1759413912", "jordan.lee\xff@example.com"), err: "mandrill event open: msg.email: invalid UTF-8 (U+FFFD) at byte 10"},
		{name: "sync event: nothing to check", raw: `{"type":"blacklist","ts":9223372036854775807,"reject":{"email":"\u0007"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := mailchimp.ParseMandrillEvent([]byte(tt.raw))
			if tt.parseErr != "" {
				if err == nil || !errors.Is(err, mailchimp.ErrMalformed) || !strings.HasSuffix(err.Error(), tt.parseErr) {
					t.Fatalf("ParseMandrillEvent() = %+v, %v; want an ErrMalformed ending %q", e, err, tt.parseErr)
				}
				if strings.Contains(tt.parseErr, "out of range") && !errors.Is(err, mailchimp.ErrOutOfRange) {
					t.Errorf("error %v does not wrap ErrOutOfRange", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMandrillEvent() error = %v", err)
			}
			err = e.Validate(received)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, mailchimp.ErrMalformed) || err.Error() != "malformed payload: "+tt.err {
				t.Fatalf("Validate() = %v, want ErrMalformed %q", err, tt.err)
			}
			checkReason(t, err, "jordan", "example.com")
		})
	}
}

func TestListWebhookValidate(t *testing.T) {
	form := func(typ, fired string, data ...string) []byte {
		v := url.Values{"type": {typ}, "fired_at": {fired}}
		for i := 0; i+1 < len(data); i += 2 {
			v.Set("data["+data[i]+"]", data[i+1])
		}
		return []byte(v.Encode())
	}
	const at = "2026-10-02 14:21:09"
	tests := []struct {
		name string
		body []byte
		err  string // after "malformed payload: "; "" for none
	}{
		{name: "fixture", body: fixtures.ListWebhooks()["cleaned-hard"]},
		{name: "fired in 1999", body: form("cleaned", "1999-12-31 23:59:59", "email", "a@example.com"),
			err: "list webhook cleaned: fired_at: 1999-12-31T23:59:59Z" + outOfRange},
		{name: "fired in year 0", body: form("cleaned", "0000-01-01 00:00:00", "email", "a@example.com"),
			err: "list webhook cleaned: fired_at: 0000-01-01T00:00:00Z" + outOfRange},
		{name: "fired in 9999", body: form("subscribe", "9999-12-31 23:59:59", "email", "a@example.com"),
			err: "list webhook subscribe: fired_at: 9999-12-31T23:59:59Z" + outOfRange},
		{name: "a day ahead", body: form("subscribe", "2026-10-06 10:00:00", "email", "a@example.com")},
		{name: "a day and a second ahead", body: form("subscribe", "2026-10-06 10:00:01", "email", "a@example.com"),
			err: "list webhook subscribe: fired_at: 2026-10-06T10:00:01Z" + outOfRange},
		{name: "control character", body: form("cleaned", at, "email", "jordan\x07@example.com"),
			err: "list webhook cleaned: data[email]: control character at byte 6"},
		{name: "invalid UTF-8", body: []byte("type=unsubscribe&fired_at=2026-10-02+14%3A21%3A09&data%5Bemail%5D=jordan%FF%40example.com"),
			err: "list webhook unsubscribe: data[email]: invalid UTF-8 at byte 6"},
		{name: "upemail old address", body: form("upemail", at, "old_email", "jordan\x1b@example.com", "new_email", "j@example.com"),
			err: "list webhook upemail: data[old_email]: control character at byte 6"},
		{name: "upemail new address", body: form("upemail", at, "old_email", "j@example.com", "new_email", "jordan\u009f@example.com"),
			err: "list webhook upemail: data[new_email]: control character at byte 6"},
		{name: "campaign has no address", body: form("campaign", at, "id", "c1", "subject", "\x07")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := mailchimp.ParseListWebhook(tt.body)
			if err != nil {
				t.Fatalf("ParseListWebhook() error = %v (ingress takes it: the mapper judges it)", err)
			}
			err = w.Validate(received)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, mailchimp.ErrMalformed) || err.Error() != "malformed payload: "+tt.err {
				t.Fatalf("Validate() = %v, want ErrMalformed %q", err, tt.err)
			}
			checkReason(t, err, "jordan", "example.com")
		})
	}
}

func TestActivityMemberValidate(t *testing.T) {
	member := func(email, ts string) []byte {
		return []byte(`{"campaign_id":"c1","list_id":"l1","email_address":"` + email +
			`","activity":[{"action":"open","timestamp":"2026-10-02T14:20:58+00:00"},{"action":"click","timestamp":"` + ts + `"}]}`)
	}
	const ok, at = "jordan.lee@example.com", "2026-10-02T14:21:30+00:00"
	tests := []struct {
		name string
		raw  []byte
		err  string // after "malformed payload: "; "" for none
	}{
		{name: "fixture", raw: fixtures.ActivityMembers()[1]},
		{name: "plain", raw: member(ok, at)},
		// The latest a four-digit year and an offset can say: 10000 in UTC.
		{name: "year 10000 in UTC", raw: member(ok, "9999-12-31T23:59:59-23:59"),
			err: "email-activity member: activity[1].timestamp: 10000-01-01T23:58:59Z" + outOfRange},
		{name: "1999", raw: member(ok, "1999-12-31T23:59:59Z"),
			err: "email-activity member: activity[1].timestamp: 1999-12-31T23:59:59Z" + outOfRange},
		{name: "two days ahead", raw: member(ok, "2026-10-07T10:00:00Z"),
			err: "email-activity member: activity[1].timestamp: 2026-10-07T10:00:00Z" + outOfRange},
		{name: "control character", raw: member(`jordan\u0000.lee@example.com`, at),
			err: "email-activity member: email_address: control character at byte 6"},
		{name: "invalid UTF-8", raw: member("jordan\xc3.lee@example.com", at),
			err: "email-activity member: email_address: invalid UTF-8 (U+FFFD) at byte 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := mailchimp.ParseActivityMember(tt.raw)
			if err != nil {
				t.Fatalf("ParseActivityMember() error = %v", err)
			}
			err = m.Validate(received)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, mailchimp.ErrMalformed) || err.Error() != "malformed payload: "+tt.err {
				t.Fatalf("Validate() = %v, want ErrMalformed %q", err, tt.err)
			}
			checkReason(t, err, "jordan", "example.com")
		})
	}
}
