package mailchimp

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// fastSeeds are Mandrill events the fast path must read (the first n), then
// shapes it must decline or read exactly as encoding/json does.
func fastSeeds(t testing.TB) (seeds [][]byte, n int) {
	t.Helper()
	batch, err := os.ReadFile("fixtures/mandrill/events.json")
	if err != nil {
		t.Fatal(err)
	}
	units, err := SplitMandrillBatch(string(batch))
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, 0, len(units)+20)
	for _, u := range units {
		out = append(out, u)
	}
	out = append(out,
		[]byte(`{"event":"click","ts":1759413940,"_id":"m1","url":"https://shop.example/track/1","ip":"192.0.2.44","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6)","msg":{"_id":"m1","ts":1759413640,"state":"sent","subject":"Your order #1 has shipped","email":"user1@example.com","sender":"no-reply@shop.example","tags":["shipping","orders"],"metadata":{"user_ref":"u-1"}}}`),
		[]byte(` { "event" : "open" , "ts" : 5 , "msg" : { "_id" : "x" , "email" : "a@b" , "tags" : [ ] } } `))
	n = len(out)
	return append(out,
		[]byte(`{"event":"open","ts":5,"msg":{"_id":"x","email":"a@b","tags":[]},"x":[1,-2.5e+3,true,false,null,{"a":"\u00e9\n"}]}`),
		[]byte(`{"Event":"open","ts":5,"msg":{"_id":"x","email":"a@b"}}`),
		[]byte(`{"event":"open","event":"click","ts":5,"msg":{"_id":"x","email":"a@b"}}`),
		[]byte(`{"event":"op\u0065n","ts":5,"msg":{"_id":"x","email":"a@b"}}`),
		[]byte(`{"event":"open","ts":5.0,"msg":{"_id":"x","email":"a@b"}}`),
		[]byte(`{"event":"open","ts":-0,"msg":{"_id":"x","email":"é@b"}}`),
		[]byte(`{"event":"open","ts":01,"msg":{}}`),
		[]byte(`{"event":"open","ts":1,"msg":null}`),
		[]byte(`{"event":"open","ts":1,"msg":{"tags":null}}`),
		[]byte(`{"event":"open","ts":1} x`),
		[]byte(`{"event":"open","ts":1,}`),
		[]byte(`{"event":"open","x":nul}`),
		[]byte(`{"event":"open","x":"\q"}`),
		[]byte(`{"type":"blacklist","reject":{"email":"a@b"}}`),
		[]byte(`[]`),
		[]byte(``),
	), n
}

// agree checks that a fast answer is json.Unmarshal's, and returns whether
// the fast path answered.
func agree(t *testing.T, raw []byte) bool {
	t.Helper()
	fast, ok := fastMandrillEvent(raw)
	var want MandrillEvent
	err := json.Unmarshal(raw, &want)
	switch {
	case !ok:
		if fast.Event != "" || fast.TS != 0 || fast.Msg.Tags != nil {
			t.Fatalf("declined %q but returned %+v", raw, fast)
		}
	case err != nil:
		t.Fatalf("fast path read %q, which encoding/json refuses: %v", raw, err)
	case !reflect.DeepEqual(fast, want):
		t.Fatalf("fast path read %q as\n%+v\nencoding/json as\n%+v", raw, fast, want)
	}
	return ok
}

func TestFastMandrillEvent(t *testing.T) {
	seeds, n := fastSeeds(t)
	for _, raw := range seeds[n:] {
		agree(t, raw)
	}
	// What Mandrill sends takes the fast path, or it would be no faster.
	for _, raw := range seeds[:n] {
		if !agree(t, raw) {
			t.Errorf("fixture event declined: %s", raw)
		}
	}
}

func FuzzFastMandrillEvent(f *testing.F) {
	seeds, _ := fastSeeds(f)
	for _, raw := range seeds {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { agree(t, raw) })
}
