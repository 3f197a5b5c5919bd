package mailchimp_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

func TestUnescapeMandrillForm(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		ok     bool
		events string
		err    string
	}{
		{name: "fixture", body: string(fixtures.Read("mandrill/webhook.form")), ok: true,
			events: mandrillForm(t).Get(mailchimp.MandrillEventsField)},
		{name: "validation post", body: fixtures.Mandrill().ValidationPost.Body, ok: true, events: "[]"},
		{name: "plus and escapes", body: "mandrill_events=%5B+%7b%22a%22%3A1%7D%5d", ok: true, events: `[ {"a":1}]`},
		{name: "empty value", body: "mandrill_events=", ok: true, events: ""},
		{name: "bad escape", body: "mandrill_events=%5B%zz%5D", ok: true, err: `invalid URL escape "%zz"`},
		{name: "escape cut short", body: "mandrill_events=%5", ok: true, err: `invalid URL escape "%5"`},
		{name: "two fields", body: "mandrill_events=%5B%5D&x=1", ok: false},
		{name: "semicolon", body: "mandrill_events=%5B%5D;x=1", ok: false},
		{name: "escaped name", body: "mandrill%5Fevents=%5B%5D", ok: false},
		{name: "other field", body: "events=%5B%5D", ok: false},
		{name: "empty", body: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			events, ok, err := mailchimp.UnescapeMandrillForm(body)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok && string(body) != tt.body {
				t.Fatalf("declined but changed the body to %q", body)
			}
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				if _, perr := url.ParseQuery(tt.body); perr == nil || perr.Error() != err.Error() {
					t.Fatalf("url.ParseQuery error %v differs from %v", perr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if ok && string(events) != tt.events {
				t.Fatalf("events %q, want %q", events, tt.events)
			}
		})
	}
}

func TestVerifyMandrillEvents(t *testing.T) {
	sig := fixtures.Mandrill()
	body := fixtures.Read("mandrill/webhook.form")
	events, ok, err := mailchimp.UnescapeMandrillForm(body)
	if !ok || err != nil {
		t.Fatalf("UnescapeMandrillForm: %v %v", ok, err)
	}
	if !mailchimp.VerifyMandrillEvents(sig.RegisteredURL, sig.WebhookKey, events, sig.XMandrillSignature) {
		t.Fatal("refused the fixture's signature")
	}
	for name, c := range map[string]struct{ url, key, sig string }{
		"wrong key":       {sig.RegisteredURL, sig.WebhookKey + "x", sig.XMandrillSignature},
		"wrong url":       {sig.RegisteredURL + "/", sig.WebhookKey, sig.XMandrillSignature},
		"empty signature": {sig.RegisteredURL, sig.WebhookKey, ""},
		"not base64":      {sig.RegisteredURL, sig.WebhookKey, "***"},
		"validation key":  {sig.RegisteredURL, mailchimp.MandrillValidationKey, sig.XMandrillSignature},
	} {
		if mailchimp.VerifyMandrillEvents(c.url, c.key, events, c.sig) {
			t.Errorf("%s: accepted", name)
		}
	}
	tampered := bytes.Replace(events, []byte("jordan.lee@"), []byte("jordan.le3@"), 1)
	if mailchimp.VerifyMandrillEvents(sig.RegisteredURL, sig.WebhookKey, tampered, sig.XMandrillSignature) {
		t.Error("accepted a tampered batch")
	}
}

func TestScanMandrillBatchIDs(t *testing.T) {
	tests := []struct {
		name  string
		event string
		id    string
	}{
		{name: "msg id", event: `{"_id":"e1","msg":{"_id":"m1"}}`, id: "m1"},
		{name: "event id only", event: `{"_id":"e1"}`, id: "e1"},
		{name: "empty msg id", event: `{"_id":"e1","msg":{"_id":""}}`, id: "e1"},
		{name: "none", event: `{"event":"open"}`, id: ""},
		{name: "msg null", event: `{"_id":"e1","msg":null}`, id: "e1"},
		{name: "id null", event: `{"_id":null,"msg":{"_id":null}}`, id: ""},
		{name: "id number", event: `{"_id":5,"msg":{"_id":"m1"}}`, id: ""},
		{name: "msg id object", event: `{"msg":{"_id":{"a":1}}}`, id: ""},
		{name: "msg string", event: `{"_id":"e1","msg":"m1"}`, id: ""},
		{name: "msg array", event: `{"_id":"e1","msg":[]}`, id: ""},
		{name: "last id wins", event: `{"_id":"e1","_id":"e2"}`, id: "e2"},
		{name: "null keeps earlier", event: `{"_id":"e1","_id":null}`, id: "e1"},
		{name: "msgs merge", event: `{"msg":{"_id":"m1"},"msg":{"x":1}}`, id: "m1"},
		{name: "escaped id", event: `{"_id":"e\u00e9\"1"}`, id: "eé\"1"},
		{name: "escaped key", event: `{"\u005fid":"e1"}`, id: "e1"},
		{name: "case folded key", event: `{"_ID":"e1","MSG":{"_Id":"m1"}}`, id: "m1"},
		{name: "unicode folded key", event: `{"_id":"e1","m` + "\u017f" + `g":{"_id":"m1"}}`, id: "m1"},
		{name: "nested ids ignored", event: `{"x":{"_id":"no","msg":{"_id":"no"}},"msg":{"y":{"_id":"no"}},"_id":"e1"}`, id: "e1"},
		{name: "not utf-8", event: "{\"_id\":\"e\xff1\"}", id: "e\uFFFD1"},
		{name: "whitespace", event: "{ \"_id\" :\t\"e1\" , \"msg\" : { \"_id\" : \"m1\" } }", id: "m1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := "[" + tt.event + "]"
			checkScan(t, batch)
			units, err := mailchimp.ScanMandrillBatch([]byte(batch), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(units) != 1 || string(units[0].Raw) != tt.event || string(units[0].MessageID) != tt.id {
				t.Fatalf("units %q, want one with id %q", units, tt.id)
			}
		})
	}
}

func TestScanMandrillBatchAgreesWithSplit(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 9999) + "1" + strings.Repeat("}", 9999)
	tooDeep := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	for _, events := range []string{
		string(fixtures.Read("mandrill/events.json")),
		mandrillForm(t).Get(mailchimp.MandrillEventsField),
		"[]", " [ ] ", "[{}]", " \n[ {\"a\":1} ,\t{\"b\" : [2]} ]\r\n",
		`[{"event":"open","x":"\u00e9\"","y":1.50}]`,
		`[{"n":[-0,0.5e10,1E+2,-12.25e-3,true,false,null,"",{},[],[[]],{"a":{}}]}]`,
		"[" + deep + "]", "[" + tooDeep + "]",
		// Refused.
		"", "  ", "null", "null ", `{"event":"open"}`, `"[]"`, "1", "[1]", `[{"event":"open"},"x"]`, "[null]",
		"[[]]", "[true]", `[{"event":"open"}`, `[{"event":open}]`, `[{"a":1},]`, `[{"a":1}] x`, "[] []",
		"[],", "[]]", `[{"a":1}]}`, `[{"a":01}]`, `[{"a":1.}]`, `[{"a":.5}]`, `[{"a":1e}]`, `[{"a":-}]`,
		`[{"a":+1}]`, `[{"a":tru}]`, `[{"a":nul`, `[{"a":"\x"}]`, `[{"a":"\u12"}]`, "[{\"a\":\"\x01\"}]",
		`[{"a" 1}]`, `[{a:1}]`, `[{"a":1,}]`, `[{"a":[1,]}]`, `[{"a":[1 2]}]`, `[{"a":1}`, `[{"a":"`,
		`[{"a":"\`, `[{"_id":"\u00`, `[{"msg":{"_id":1,}}]`, `[{"msg":{"_id" "m"}}]`, `[{"msg":{`, `[{"msg":`,
		`[{"_id":`, `[{"_id":nulll}]`, `[{"msg":nul}]`, `[{}{}]`, `[{},{}`, "[{}\x00]",
	} {
		t.Run(fmt.Sprintf("%.40q", events), func(t *testing.T) { checkScan(t, events) })
	}
}

// TestScanMandrillBatchStringOffsets puts what a string scan must stop at
// at every offset of a word and beyond (the scan reads eight bytes at once).
func TestScanMandrillBatchStringOffsets(t *testing.T) {
	for _, special := range []string{`\"`, `\\`, `\u00e9`, `\n`, "\x01", "\x1f", "é", "\xff", `"`, `\`, `\u12`, `\x`} {
		for at := range 20 {
			str := strings.Repeat("a", at) + special + strings.Repeat("b", 17-at%3)
			for _, events := range []string{
				`[{"_id":"` + str + `","msg":{"_id":"` + str + `"}}]`,
				`[{"` + str + `":1,"_id":"x"}]`,
				`[{"_id":"` + str,
			} {
				checkScan(t, events)
			}
		}
	}
}

func TestScanMandrillBatchErrors(t *testing.T) {
	for _, events := range []string{"", "[", `[{"a":1}`, `[{"a":x}]`, "[1]", "[{}] x"} {
		_, err := mailchimp.ScanMandrillBatch([]byte(events), nil)
		if !errors.Is(err, mailchimp.ErrMalformed) || !strings.Contains(err.Error(), "mandrill_events") {
			t.Errorf("ScanMandrillBatch(%q) error %v", events, err)
		}
	}
}

func benchBatch(b *testing.B) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"event":"open","ts":1759413912,"_id":"m%08d","ip":"192.0.2.44","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6)","msg":{"_id":"m%08d","ts":1759413612,"state":"sent","subject":"Your order #%d has shipped","email":"user%d@example.com","sender":"no-reply@shop.example","tags":["shipping","orders"],"metadata":{"user_ref":"u-%d"}}}`, i, i, i, i, i)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

func BenchmarkScanMandrillBatch(b *testing.B) {
	events := benchBatch(b)
	var units []mailchimp.MandrillUnit
	b.SetBytes(int64(len(events)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if units, err = mailchimp.ScanMandrillBatch(events, units[:0]); err != nil || len(units) != 1000 {
			b.Fatal(err, len(units))
		}
	}
}

func BenchmarkSplitMandrillBatch(b *testing.B) {
	events := string(benchBatch(b))
	b.SetBytes(int64(len(events)))
	b.ReportAllocs()
	for b.Loop() {
		if units, err := mailchimp.SplitMandrillBatch(events); err != nil || len(units) != 1000 {
			b.Fatal(err, len(units))
		}
	}
}

func BenchmarkUnescapeMandrillForm(b *testing.B) {
	body := []byte(url.Values{mailchimp.MandrillEventsField: {string(benchBatch(b))}}.Encode())
	buf := make([]byte, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, body)
		if _, ok, err := mailchimp.UnescapeMandrillForm(buf); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
