package mailchimp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

// The committed seed corpus lives in testdata/fuzz/<FuzzName>/; the fixtures
// are added here too so a new fixture becomes a seed without a corpus edit.

func blank(s string) bool { return strings.TrimSpace(s) == "" }

func FuzzParseListWebhook(f *testing.F) {
	for _, name := range fixtures.ListWebhookNames() {
		f.Add(fixtures.ListWebhooks()[name])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w, err := mailchimp.ParseListWebhook(body)
		if err != nil {
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !reflect.DeepEqual(w, mailchimp.ListWebhook{}) {
				t.Fatalf("partial value %+v returned with error %v", w, err)
			}
			return
		}
		switch w.Type {
		case mailchimp.ListSubscribe, mailchimp.ListUnsubscribe, mailchimp.ListProfile, mailchimp.ListCleaned:
			if blank(w.Email) {
				t.Fatalf("%s accepted without an email: %+v", w.Type, w)
			}
		case mailchimp.ListUpemail:
			if blank(w.OldEmail) || blank(w.NewEmail) {
				t.Fatalf("upemail accepted without both emails: %+v", w)
			}
		case mailchimp.ListCampaign:
			if blank(w.ID) {
				t.Fatalf("campaign accepted without an id: %+v", w)
			}
		default:
			t.Fatalf("accepted unknown type %q", w.Type)
		}
		if w.FiredAt.IsZero() || w.FiredAt.Location() != time.UTC {
			t.Fatalf("fired_at %v is zero or not UTC", w.FiredAt)
		}
		if w.Data == nil {
			t.Fatal("nil Data")
		}
		addrs := []string{w.Email}
		switch w.Type {
		case mailchimp.ListUpemail:
			addrs = []string{w.OldEmail, w.NewEmail}
		case mailchimp.ListCampaign:
			addrs = nil
		}
		checkValid(t, w.Validate(fuzzReceived), inRange(w.FiredAt, fuzzReceived), "", addrs...)
		for field, got := range map[string]string{
			"list_id": w.ListID, "campaign_id": w.CampaignID, "email": w.Email, "reason": w.Reason,
			"old_email": w.OldEmail, "new_email": w.NewEmail, "id": w.ID, "subject": w.Subject,
		} {
			if got != w.Data[field] {
				t.Fatalf("field %s = %q but data[%s] = %q", field, got, field, w.Data[field])
			}
		}
		if k := w.PartitionKey(); len(k) <= 2 || (k[:2] != "c:" && k[:2] != "e:") {
			t.Fatalf("PartitionKey() = %q", k)
		}
		again, err := mailchimp.ParseListWebhook(body)
		if err != nil || !reflect.DeepEqual(w, again) {
			t.Fatalf("second parse differs: %+v, %v", again, err)
		}
	})
}

func FuzzMandrill(f *testing.F) {
	f.Add(fixtures.Read("mandrill/webhook.form"))
	f.Add([]byte(fixtures.Mandrill().ValidationPost.Body))
	f.Fuzz(func(t *testing.T, body []byte) {
		form, err := url.ParseQuery(string(body))
		// Ingress's single-pass path agrees with url.ParseQuery.
		inPlace := append([]byte(nil), body...)
		fast, ok, ferr := mailchimp.UnescapeMandrillForm(inPlace)
		switch {
		case !ok && !bytes.Equal(inPlace, body):
			t.Fatalf("UnescapeMandrillForm declined %q but changed it to %q", body, inPlace)
		case ok && ferr != nil && (err == nil || err.Error() != ferr.Error()):
			t.Fatalf("UnescapeMandrillForm(%q) error %v, url.ParseQuery's %v", body, ferr, err)
		case ok && ferr == nil && (err != nil || len(form) != 1 || len(form[mailchimp.MandrillEventsField]) != 1 ||
			form.Get(mailchimp.MandrillEventsField) != string(fast)):
			t.Fatalf("UnescapeMandrillForm(%q) = %q, url.ParseQuery's %q, %v", body, fast, form, err)
		}
		if err != nil {
			return // net/url's business; ingress answers 400
		}
		// Signing is total: whatever the form, its own signature verifies.
		const u, key = "https://hooks.example.com/webhooks/mandrill/acme", "k"
		sig := mailchimp.MandrillSignature(u, key, form)
		if !mailchimp.VerifyMandrillSignature(u, key, form, sig) {
			t.Fatalf("own signature %q refused", sig)
		}
		if ok && !mailchimp.VerifyMandrillEvents(u, key, fast, sig) {
			t.Fatalf("VerifyMandrillEvents refused the form's signature %q", sig)
		}
		if ok && mailchimp.VerifyMandrillEvents(u, key+"x", fast, sig) {
			t.Fatalf("VerifyMandrillEvents accepted a signature with another key")
		}

		events := form.Get(mailchimp.MandrillEventsField)
		checkScan(t, events)
		units, err := mailchimp.SplitMandrillBatch(events)
		if err != nil {
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Fatalf("SplitMandrillBatch error %v does not wrap ErrMalformed", err)
			}
			if units != nil {
				t.Fatalf("units %q returned with error %v", units, err)
			}
			return
		}
		if t0 := strings.TrimSpace(events); t0 == "" || t0[0] != '[' {
			t.Fatalf("accepted a batch that is not an array: %q", events)
		}
		rest := events
		for i, unit := range units {
			if len(unit) == 0 || unit[0] != '{' || !json.Valid(unit) {
				t.Fatalf("unit %d is not a JSON object: %q", i, unit)
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(unit, &obj); err != nil {
				t.Fatalf("unit %d does not decode as an object: %v", i, err)
			}
			// Byte-for-byte: each unit is the next slice of the input.
			at := strings.Index(rest, string(unit))
			if at < 0 {
				t.Fatalf("unit %d %q is not a slice of the input", i, unit)
			}
			rest = rest[at+len(unit):]

			e, err := mailchimp.ParseMandrillEvent(unit)
			if err != nil {
				if !errors.Is(err, mailchimp.ErrMalformed) {
					t.Fatalf("ParseMandrillEvent error %v does not wrap ErrMalformed", err)
				}
				continue
			}
			if e.Event == "" {
				if e.Type == "" {
					t.Fatalf("accepted an event with neither event nor type: %s", unit)
				}
				continue // sync event
			}
			if e.TS == 0 || e.MessageID() == "" || blank(e.Msg.Email) {
				t.Fatalf("accepted %s without ts, id or email: %+v", e.Event, e)
			}
			// Parsed, its ts converts whatever the receipt; validated, it
			// is in range and its address fit for Heap.
			tm, err := e.Time(time.Time{})
			if err != nil || !inRange(tm, time.Time{}) || e.PartitionKey() == "m:" {
				t.Fatalf("bad derived fields: time %v (%v) key %q", tm, err, e.PartitionKey())
			}
			tm, terr := e.Time(fuzzReceived)
			checkValid(t, e.Validate(fuzzReceived), terr == nil && inRange(tm, fuzzReceived), e.Event, e.Msg.Email)
		}
		// Nothing but the closing bracket follows the last unit.
		if len(units) > 0 && strings.TrimSpace(rest) != "]" {
			t.Fatalf("after the last unit, %q remains", rest)
		}
		if len(units) == 0 && strings.Join(strings.Fields(events), "") != "[]" {
			t.Fatalf("no units from %q", events)
		}
	})
}

// fuzzReceived is when the fuzzers' payloads were received.
var fuzzReceived = time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)

// inRange is the sane range of event times, written out again here rather
// than asked of mailchimp.EventTimeRange: from 2000 to a day after receipt,
// and never past the year 9999 (the only bound when the receipt is zero).
func inRange(at, received time.Time) bool {
	latest := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if !received.IsZero() && received.Add(24*time.Hour).Before(latest) {
		latest = received.Add(24 * time.Hour)
	}
	return !at.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) && !at.After(latest)
}

// fitAddress is what may reach Heap as an identity: valid UTF-8 without
// control characters or U+FFFD.
func fitAddress(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == utf8.RuneError
	})
}

// checkValid checks a Validate error against timeOK and the addresses: nil
// exactly when the time is in range and every address fit, else an
// ErrMalformed whose text quotes no address (quoted names the input the
// text may quote: an event name).
func checkValid(t *testing.T, err error, timeOK bool, quoted string, addrs ...string) {
	t.Helper()
	ok := timeOK
	for _, a := range addrs {
		ok = ok && fitAddress(a)
	}
	if ok != (err == nil) {
		t.Fatalf("Validate() = %v; time in range %v, addresses %q", err, timeOK, addrs)
	}
	if err == nil {
		return
	}
	if !errors.Is(err, mailchimp.ErrMalformed) {
		t.Fatalf("Validate() error %v does not wrap ErrMalformed", err)
	}
	for _, a := range addrs {
		if strings.Contains(a, "@") && !strings.Contains(quoted, a) && strings.Contains(err.Error(), a) {
			t.Fatalf("Validate() error %q quotes the address", err)
		}
	}
}

// FuzzEventTime: no time outside the sane range is returned without an
// error, no time inside it is refused, and what is returned survives the
// conversion to milliseconds that the Avro encoding makes.
func FuzzEventTime(f *testing.F) {
	const fixture, receipt = 1759413912, 1791194400 // 2025-10-02T14:05:12Z, 2026-10-05T10:00:00Z
	for _, sec := range []int64{math.MaxInt64, math.MinInt64, 18446745833123463, 253402300800, 253402300799, -1, 0,
		946684799, 946684800, fixture, receipt + 86400, receipt + 86401} {
		f.Add(sec, int64(receipt), int64(0))
		f.Add(sec, int64(0), int64(0))
	}
	f.Add(int64(253402300799), int64(253402300799), int64(999999999))
	f.Fuzz(func(t *testing.T, sec, receivedSec, nsec int64) {
		var received time.Time
		if receivedSec != 0 && receivedSec > -1<<62 && receivedSec < 1<<62 {
			received = time.Unix(receivedSec, nsec%1e9)
		}
		got, err := mailchimp.UnixTime(sec, received)
		// Far from the ends of int64, time.Unix is exact: an oracle.
		exact := sec > -1<<62 && sec < 1<<62
		switch {
		case err != nil:
			if !errors.Is(err, mailchimp.ErrOutOfRange) || !got.IsZero() || !strings.HasPrefix(err.Error(), strconv.FormatInt(sec, 10)+" ") {
				t.Fatalf("UnixTime(%d, %v) = %v, %v", sec, received, got, err)
			}
			if exact && inRange(time.Unix(sec, 0), received) {
				t.Fatalf("UnixTime(%d, %v) refused a time in range: %v", sec, received, err)
			}
		case !inRange(got, received) || got.Unix() != sec || got.Nanosecond() != 0 || got.Location() != time.UTC:
			t.Fatalf("UnixTime(%d, %v) = %v without an error", sec, received, got)
		case !time.UnixMilli(got.UnixMilli()).Equal(got) || got.Year() < 2000 || got.Year() > 9999:
			t.Fatalf("UnixTime(%d, %v) = %v does not survive milliseconds", sec, received, got)
		}
		if !exact {
			return
		}
		at := time.Unix(sec, nsec)
		if err := mailchimp.CheckEventTime(at, received); (err == nil) != inRange(at, received) {
			t.Fatalf("CheckEventTime(%v, %v) = %v", at, received, err)
		}
	})
}

// FuzzActivityMember: a Reports API member that parses and validates has
// times in range and addresses fit for Heap.
func FuzzActivityMember(f *testing.F) {
	for _, m := range fixtures.ActivityMembers() {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := mailchimp.ParseActivityMember(raw)
		if err != nil {
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		timeOK := true
		for _, a := range m.Activity {
			timeOK = timeOK && inRange(a.Timestamp, fuzzReceived)
		}
		checkValid(t, m.Validate(fuzzReceived), timeOK, "", m.EmailAddress)
	})
}

// checkScan compares ScanMandrillBatch with SplitMandrillBatch and the ids
// with encoding/json's decoding of them.
func checkScan(t *testing.T, events string) {
	t.Helper()
	want, werr := mailchimp.SplitMandrillBatch(events)
	got, gerr := mailchimp.ScanMandrillBatch([]byte(events), nil)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("ScanMandrillBatch(%q) error %v, SplitMandrillBatch's %v", events, gerr, werr)
	}
	if gerr != nil {
		if !errors.Is(gerr, mailchimp.ErrMalformed) {
			t.Fatalf("ScanMandrillBatch error %v does not wrap ErrMalformed", gerr)
		}
		if got != nil {
			t.Fatalf("units %q returned with error %v", got, gerr)
		}
		return
	}
	if len(got) != len(want) {
		t.Fatalf("ScanMandrillBatch(%q): %d units, SplitMandrillBatch %d", events, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Raw, want[i]) {
			t.Fatalf("unit %d: %q, SplitMandrillBatch's %q", i, got[i].Raw, want[i])
		}
		var ids struct {
			ID  string `json:"_id"`
			Msg struct {
				ID string `json:"_id"`
			} `json:"msg"`
		}
		wantID := ""
		if json.Unmarshal(want[i], &ids) == nil {
			wantID = (mailchimp.MandrillEvent{ID: ids.ID, Msg: mailchimp.MandrillMsg{ID: ids.Msg.ID}}).MessageID()
		}
		if string(got[i].MessageID) != wantID {
			t.Fatalf("unit %d %s: message id %q, encoding/json's %q", i, want[i], got[i].MessageID, wantID)
		}
	}
}
