package mailchimp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

func mandrillForm(t *testing.T) url.Values {
	t.Helper()
	form, err := url.ParseQuery(string(fixtures.Read("mandrill/webhook.form")))
	if err != nil {
		t.Fatalf("webhook.form: %v", err)
	}
	return form
}

func TestMandrillSignatureFixtures(t *testing.T) {
	sig := fixtures.Mandrill()
	if sig.BodyFile != "webhook.form" {
		t.Fatalf("signature.json body_file = %q, want webhook.form", sig.BodyFile)
	}
	batch := mandrillForm(t)
	validation, err := url.ParseQuery(sig.ValidationPost.Body)
	if err != nil {
		t.Fatalf("validation body: %v", err)
	}
	if sig.ValidationPost.Key != mailchimp.MandrillValidationKey {
		t.Fatalf("validation key = %q, want %q", sig.ValidationPost.Key, mailchimp.MandrillValidationKey)
	}
	tests := []struct {
		name string
		url  string
		key  string
		form url.Values
		sig  string
	}{
		{name: "batch", url: sig.RegisteredURL, key: sig.WebhookKey, form: batch, sig: sig.XMandrillSignature},
		{name: "validation post", url: sig.RegisteredURL, key: sig.ValidationPost.Key, form: validation, sig: sig.ValidationPost.XMandrillSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mailchimp.MandrillSignature(tt.url, tt.key, tt.form); got != tt.sig {
				t.Errorf("MandrillSignature() = %q, want %q", got, tt.sig)
			}
			if !mailchimp.VerifyMandrillSignature(tt.url, tt.key, tt.form, tt.sig) {
				t.Errorf("VerifyMandrillSignature() refused the fixture signature")
			}
		})
	}
}

func TestVerifyMandrillSignatureRefuses(t *testing.T) {
	sig := fixtures.Mandrill()
	good := mandrillForm(t)
	tampered := mandrillForm(t)
	tampered.Set(mailchimp.MandrillEventsField, strings.Replace(tampered.Get(mailchimp.MandrillEventsField), "jordan.lee@", "jordan.le3@", 1))
	extraField := mandrillForm(t)
	extraField.Set("extra", "1")
	empty := url.Values{}
	validation, err := url.ParseQuery(sig.ValidationPost.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.ContainsAny(sig.ValidationPost.XMandrillSignature, "+/") {
		t.Fatal("validation signature no longer exercises the url-safe alphabet case")
	}

	// One flipped bit of a valid signature.
	raw := []byte(sig.XMandrillSignature)
	raw[0] ^= 0x01
	flipped := string(raw)

	tests := []struct {
		name string
		url  string
		key  string
		form url.Values
		sig  string
	}{
		{name: "tampered body", url: sig.RegisteredURL, key: sig.WebhookKey, form: tampered, sig: sig.XMandrillSignature},
		{name: "extra field", url: sig.RegisteredURL, key: sig.WebhookKey, form: extraField, sig: sig.XMandrillSignature},
		{name: "empty form", url: sig.RegisteredURL, key: sig.WebhookKey, form: empty, sig: sig.XMandrillSignature},
		{name: "wrong key", url: sig.RegisteredURL, key: sig.WebhookKey + "x", form: good, sig: sig.XMandrillSignature},
		{name: "validation key on a batch", url: sig.RegisteredURL, key: mailchimp.MandrillValidationKey, form: good, sig: sig.XMandrillSignature},
		{name: "url not exactly as registered", url: sig.RegisteredURL + "/", form: good, key: sig.WebhookKey, sig: sig.XMandrillSignature},
		{name: "url scheme differs", url: strings.Replace(sig.RegisteredURL, "https:", "http:", 1), form: good, key: sig.WebhookKey, sig: sig.XMandrillSignature},
		{name: "flipped signature", url: sig.RegisteredURL, key: sig.WebhookKey, form: good, sig: flipped},
		{name: "garbage base64", url: sig.RegisteredURL, key: sig.WebhookKey, form: good, sig: "not base64!!"},
		{name: "url-safe base64 alphabet", url: sig.RegisteredURL, key: sig.ValidationPost.Key, form: validation, sig: strings.NewReplacer("+", "-", "/", "_").Replace(sig.ValidationPost.XMandrillSignature)},
		{name: "truncated signature", url: sig.RegisteredURL, key: sig.WebhookKey, form: good, sig: sig.XMandrillSignature[:len(sig.XMandrillSignature)-4]},
		{name: "empty signature", url: sig.RegisteredURL, key: sig.WebhookKey, form: good, sig: ""},
		{name: "hex instead of base64", url: sig.RegisteredURL, key: sig.WebhookKey, form: good, sig: "ceb5f4a1142112842477b350b5d5423186208e89"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if mailchimp.VerifyMandrillSignature(tt.url, tt.key, tt.form, tt.sig) {
				t.Errorf("VerifyMandrillSignature() accepted it")
			}
		})
	}
}

func TestMandrillSignatureSortsKeysAndValues(t *testing.T) {
	// Key order on the wire does not matter; keys are sorted and each value
	// follows its key.
	a, _ := url.ParseQuery("b=2&a=1&mandrill_events=%5B%5D")
	b, _ := url.ParseQuery("mandrill_events=%5B%5D&a=1&b=2")
	const u, k = "https://hooks.example.com/m", "key"
	if sa, sb := mailchimp.MandrillSignature(u, k, a), mailchimp.MandrillSignature(u, k, b); sa != sb {
		t.Errorf("signature depends on form order: %q != %q", sa, sb)
	}
	// The signed string is url + "a1b2mandrill_events[]": a form that
	// concatenates to the same string signs the same (documented behaviour).
	c := url.Values{"a1b2mandrill_events": {"[]"}}
	if sa, sc := mailchimp.MandrillSignature(u, k, a), mailchimp.MandrillSignature(u, k, c); sa != sc {
		t.Errorf("signature is not over url + key + value concatenation: %q != %q", sa, sc)
	}
}

// decodeFixtureBatch splits events.json with a json.Decoder, independently of
// SplitMandrillBatch, keeping each element's bytes.
func decodeFixtureBatch(t *testing.T, events string) []json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(events))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		t.Fatalf("fixture batch does not start with [: %v %v", tok, err)
	}
	var out []json.RawMessage
	for dec.More() {
		var r json.RawMessage
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("fixture batch: %v", err)
		}
		out = append(out, r)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		t.Fatalf("fixture batch does not end with ]: %v %v", tok, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("fixture batch has trailing data: %v", err)
	}
	return out
}

func TestSplitMandrillBatchFixtures(t *testing.T) {
	tests := []struct {
		name   string
		events string
		want   int
	}{
		{name: "events.json", events: string(fixtures.Read("mandrill/events.json")), want: 9},
		{name: "webhook.form", events: mandrillForm(t).Get(mailchimp.MandrillEventsField), want: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.SplitMandrillBatch(tt.events)
			if err != nil {
				t.Fatalf("SplitMandrillBatch() error = %v", err)
			}
			want := decodeFixtureBatch(t, tt.events)
			if len(want) != tt.want {
				t.Fatalf("fixture has %d events, want %d", len(want), tt.want)
			}
			if len(got) != len(want) {
				t.Fatalf("SplitMandrillBatch() = %d units, want %d", len(got), len(want))
			}
			rest := tt.events
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("unit %d differs from the decoder's bytes:\n got %s\nwant %s", i, got[i], want[i])
				}
				// Byte-for-byte: each unit is a slice of the input, in order.
				at := strings.Index(rest, string(got[i]))
				if at < 0 {
					t.Fatalf("unit %d is not a substring of the input (after unit %d)", i, i-1)
				}
				rest = rest[at+len(got[i]):]
			}
		})
	}
}

func TestSplitMandrillBatch(t *testing.T) {
	tests := []struct {
		name   string
		events string
		want   []string
	}{
		{name: "empty array (validation post)", events: "[]", want: nil},
		{name: "whitespace around", events: " \n[ {\"a\":1} ,\t{\"b\" : [2]} ]\r\n", want: []string{`{"a":1}`, `{"b" : [2]}`}},
		{name: "keeps inner formatting and escapes", events: `[{"event":"open","x":"\u00e9\"","y":1.50}]`, want: []string{`{"event":"open","x":"\u00e9\"","y":1.50}`}},
		{name: "empty object", events: "[{}]", want: []string{"{}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.SplitMandrillBatch(tt.events)
			if err != nil {
				t.Fatalf("SplitMandrillBatch() error = %v", err)
			}
			var gotS []string
			for _, r := range got {
				gotS = append(gotS, string(r))
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("SplitMandrillBatch() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSplitMandrillBatchMalformed(t *testing.T) {
	tests := []struct {
		name   string
		events string
	}{
		{name: "empty", events: ""},
		{name: "whitespace", events: "  "},
		{name: "null", events: "null"},
		{name: "object", events: `{"event":"open"}`},
		{name: "string", events: `"[]"`},
		{name: "number", events: "1"},
		{name: "number element", events: "[1]"},
		{name: "string element", events: `[{"event":"open"},"x"]`},
		{name: "null element", events: "[null]"},
		{name: "array element", events: "[[]]"},
		{name: "bool element", events: "[true]"},
		{name: "unterminated", events: `[{"event":"open"}`},
		{name: "invalid json", events: `[{"event":open}]`},
		{name: "trailing comma", events: `[{"a":1},]`},
		{name: "trailing data", events: `[{"a":1}] x`},
		{name: "trailing array", events: "[] []"},
		{name: "trailing comma after array", events: "[],"},
		{name: "trailing closing bracket", events: "[]]"},
		{name: "trailing closing brace", events: `[{"a":1}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.SplitMandrillBatch(tt.events)
			if err == nil {
				t.Fatalf("SplitMandrillBatch(%q) = %q, want error", tt.events, got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if got != nil {
				t.Errorf("SplitMandrillBatch() returned units with its error: %q", got)
			}
		})
	}
}

func TestParseMandrillEventFixtures(t *testing.T) {
	const (
		shipping = "a81c2e0f6d9b4c55b0e3f7a2c4d6e8f0"
		password = "c02d4f6a8b0c4e1f9a3b5c7d9e1f3a5b"
		digest1  = "e5f70a1b2c3d4e5f6a7b8c9d0e1f2a3b"
		digest2  = "f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6"
		digest3  = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	)
	shipMsg := func(state string) mailchimp.MandrillMsg {
		return mailchimp.MandrillMsg{
			ID: shipping, TS: 1759413600, Email: "jordan.lee@example.com", Subject: "Your order #88213 has shipped",
			Sender: "no-reply@shop.example", Tags: []string{"shipping"}, State: state,
		}
	}
	digestMsg := func(id string, ts int64, email, state string) mailchimp.MandrillMsg {
		return mailchimp.MandrillMsg{
			ID: id, TS: ts, Email: email, Subject: "Weekly digest",
			Sender: "no-reply@shop.example", Tags: []string{"digest"}, State: state,
		}
	}
	want := []mailchimp.MandrillEvent{
		{Event: "send", TS: 1759413600, ID: shipping, Msg: shipMsg("sent")},
		{Event: "open", TS: 1759413912, ID: shipping, IP: "192.0.2.44", Msg: shipMsg("sent")},
		{Event: "click", TS: 1759413940, ID: shipping, IP: "192.0.2.44", URL: "https://shop.example/track/88213", Msg: shipMsg("sent")},
		{Event: "hard_bounce", TS: 1759414100, ID: password, Msg: mailchimp.MandrillMsg{
			ID: password, TS: 1759414090, Email: "nobody@invalid.example", Subject: "Reset your password",
			Sender: "no-reply@shop.example", Tags: []string{"auth"}, State: "bounced",
		}},
		{Event: "soft_bounce", TS: 1759414200, ID: digest1, Msg: digestMsg(digest1, 1759414150, "full.box@example.com", "soft-bounced")},
		{Event: "deferral", TS: 1759414300, ID: digest2, Msg: digestMsg(digest2, 1759414250, "slow.mx@example.com", "deferred")},
		{Event: "spam", TS: 1759414400, ID: shipping, Msg: shipMsg("sent")},
		{Event: "unsub", TS: 1759414500, ID: shipping, Msg: shipMsg("sent")},
		{Event: "reject", TS: 1759414600, ID: digest3, Msg: digestMsg(digest3, 1759414600, "blocked@example.com", "rejected")},
	}
	units, err := mailchimp.SplitMandrillBatch(string(fixtures.Read("mandrill/events.json")))
	if err != nil {
		t.Fatalf("SplitMandrillBatch() error = %v", err)
	}
	if len(units) != len(want) {
		t.Fatalf("fixture has %d events, want %d", len(units), len(want))
	}
	for i, raw := range units {
		t.Run(want[i].Event, func(t *testing.T) {
			got, err := mailchimp.ParseMandrillEvent(raw)
			if err != nil {
				t.Fatalf("ParseMandrillEvent() error = %v", err)
			}
			if diff := cmp.Diff(want[i], got); diff != "" {
				t.Errorf("ParseMandrillEvent() mismatch (-want +got):\n%s", diff)
			}
			received := time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)
			if tm, err := got.Time(received); err != nil || !tm.Equal(time.Unix(want[i].TS, 0)) || tm.Location() != time.UTC {
				t.Errorf("Time() = %v, %v; want %v in UTC", tm, err, time.Unix(want[i].TS, 0).UTC())
			}
			if err := got.Validate(received); err != nil {
				t.Errorf("Validate() = %v", err)
			}
			if k, wk := got.PartitionKey(), "m:"+want[i].Msg.ID; k != wk {
				t.Errorf("PartitionKey() = %q, want %q", k, wk)
			}
		})
	}
}

func TestParseMandrillEvent(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want mailchimp.MandrillEvent
	}{
		{
			name: "sync blacklist event",
			raw:  `{"type":"blacklist","action":"add","reject":{"email":"x@example.com","reason":"hard-bounce"},"ts":1759414700}`,
			want: mailchimp.MandrillEvent{Type: "blacklist", TS: 1759414700},
		},
		{
			name: "sync whitelist event without ts",
			raw:  `{"type":"whitelist","action":"remove","entry":{"email":"x@example.com"}}`,
			want: mailchimp.MandrillEvent{Type: "whitelist"},
		},
		{
			name: "message id from the event when msg has none",
			raw:  `{"event":"open","ts":1759413912,"_id":"m1","msg":{"email":"a@example.com"}}`,
			want: mailchimp.MandrillEvent{Event: "open", TS: 1759413912, ID: "m1", Msg: mailchimp.MandrillMsg{Email: "a@example.com"}},
		},
		{
			name: "message id from msg when the event has none",
			raw:  `{"event":"open","ts":1759413912,"msg":{"_id":"m2","email":"a@example.com","tags":null}}`,
			want: mailchimp.MandrillEvent{Event: "open", TS: 1759413912, Msg: mailchimp.MandrillMsg{ID: "m2", Email: "a@example.com"}},
		},
		{
			name: "unknown fields and events are kept for the mapper to ignore",
			raw:  `{"event":"delivered","ts":1759413912,"_id":"m3","extra":{"a":[1,2]},"msg":{"email":"a@example.com","metadata":{"k":"v"},"tags":["a","b"]}}`,
			want: mailchimp.MandrillEvent{Event: "delivered", TS: 1759413912, ID: "m3", Msg: mailchimp.MandrillMsg{Email: "a@example.com", Tags: []string{"a", "b"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseMandrillEvent([]byte(tt.raw))
			if err != nil {
				t.Fatalf("ParseMandrillEvent() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseMandrillEvent() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if id := (mailchimp.MandrillEvent{ID: "ev", Msg: mailchimp.MandrillMsg{ID: "msg"}}).MessageID(); id != "msg" {
		t.Errorf("MessageID() = %q, want msg._id", id)
	}
}

func TestParseMandrillEventMalformed(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{name: "empty", raw: ""},
		{name: "not json", raw: "event=open"},
		{name: "array", raw: `[{"event":"open"}]`},
		{name: "null", raw: "null"},
		{name: "empty object", raw: "{}"},
		{name: "neither event nor type", raw: `{"ts":1759413912,"_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "missing ts", raw: `{"event":"open","_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "zero ts", raw: `{"event":"open","ts":0,"_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "negative ts", raw: `{"event":"open","ts":-5,"_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "ts as a string", raw: `{"event":"open","ts":"1759413912","_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "fractional ts", raw: `{"event":"open","ts":1759413912.5,"_id":"m","msg":{"email":"a@example.com"}}`},
		{name: "missing _id", raw: `{"event":"open","ts":1759413912,"msg":{"email":"a@example.com"}}`},
		{name: "missing msg", raw: `{"event":"open","ts":1759413912,"_id":"m"}`},
		{name: "missing email", raw: `{"event":"open","ts":1759413912,"_id":"m","msg":{"subject":"s"}}`},
		{name: "blank email", raw: `{"event":"open","ts":1759413912,"_id":"m","msg":{"email":"  "}}`},
		{name: "tags not strings", raw: `{"event":"open","ts":1759413912,"_id":"m","msg":{"email":"a@example.com","tags":[1]}}`},
		{name: "msg not an object", raw: `{"event":"open","ts":1759413912,"_id":"m","msg":"a@example.com"}`},
		{name: "truncated", raw: `{"event":"open","ts":10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseMandrillEvent([]byte(tt.raw))
			if err == nil {
				t.Fatalf("ParseMandrillEvent() = %+v, want error", got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}
