package mailchimp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

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
			if e.TS <= 0 || e.MessageID() == "" || blank(e.Msg.Email) {
				t.Fatalf("accepted %s without ts, id or email: %+v", e.Event, e)
			}
			if e.Time().IsZero() || e.PartitionKey() == "m:" {
				t.Fatalf("bad derived fields: time %v key %q", e.Time(), e.PartitionKey())
			}
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
