package heap

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestAppendTrackRequestMatchesMarshal(t *testing.T) {
	tests := []struct {
		name string
		evs  []Event
	}{
		{"nil events", nil},
		{"no events", []Event{}},
		{"bare event", []Event{{Identity: "a", Event: "e"}}},
		{"every field", []Event{{Identity: "ü@x", Event: "Email Open", Timestamp: "2026-10-02T15:02:11.000Z",
			Properties:     map[string]any{"Campaign ID": "c1", "URL": "https://x/?a=1&b=<2>", "Tags": "a,b", "Bounce Type": ""},
			IdempotencyKey: "k1"}, {Identity: "b", Event: "Email Click"}}},
		{"escapes", []Event{{Identity: "q\"\\\b\f\n\r\t\x00\x1f\x7f", Event: "\u2028\u2029 \xff\xfe é 日本 🎉 <>&",
			Properties: map[string]any{"\x01key<": "v\u2029\xc3"}}}},
		{"non-string values", []Event{{Identity: "a", Event: "e",
			Properties: map[string]any{"n": 1.5, "b": true, "nil": nil, "list": []string{"x<"}, "s": "t"}}}},
		{"empty properties", []Event{{Identity: "a", Event: "e", Properties: map[string]any{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(TrackRequest{AppID: "app<1>", Events: tt.evs})
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendTrackRequest(nil, "app<1>", tt.evs)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("appendTrackRequest() = %s, %v\nwant %s", got, err, want)
			}
			// The same events, each encoded ahead into JSON: the same body.
			pre := slices.Clone(tt.evs)
			for i, e := range pre {
				if pre[i].JSON, err = AppendEvent(nil, e); err != nil {
					t.Fatal(err)
				}
				pre[i].Identity, pre[i].Properties = "not sent", nil
			}
			if got, err := appendTrackRequest(nil, "app<1>", pre); err != nil || !bytes.Equal(got, want) {
				t.Errorf("appendTrackRequest(JSON) = %s, %v\nwant %s", got, err, want)
			}
		})
	}
	// Props in key order are written as encoding/json writes the same map.
	withProps := []Event{{Identity: "a", Event: "e", IdempotencyKey: "k", Props: []Property{{"Bounce Type", "hard"}, {"Campaign ID", "c<1>"}, {"URL", "\u2028\xff"}}},
		{Identity: "b", Event: "e", Props: []Property{}}}
	asMaps := make([]Event, len(withProps))
	for i, e := range withProps {
		asMaps[i], asMaps[i].Properties, asMaps[i].Props = e, e.PropertyMap(), nil
	}
	want, _ := json.Marshal(TrackRequest{AppID: "1", Events: asMaps})
	if got, err := appendTrackRequest(nil, "1", withProps); err != nil || !bytes.Equal(got, want) {
		t.Errorf("appendTrackRequest(Props) = %s, %v\nwant %s", got, err, want)
	}
	if _, err := appendTrackRequest(nil, "1", []Event{{Properties: map[string]any{"x": math.Inf(1)}}}); err == nil {
		t.Error("appendTrackRequest with an infinite property: want an error")
	}
}

func FuzzAppendTrackRequest(f *testing.F) {
	f.Add("a@b.c", "Email Open", "https://x/?a=<1>&b", "k", "\u2028\xff")
	f.Add("", "", "", "", strings.Repeat("é", 3))
	f.Fuzz(func(t *testing.T, identity, event, url, key, value string) {
		evs := []Event{{Identity: identity, Event: event, Timestamp: value, IdempotencyKey: key,
			Properties: map[string]any{"URL": url, key: value, value: identity}}}
		want, err := json.Marshal(TrackRequest{AppID: key, Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendTrackRequest(nil, key, evs)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("appendTrackRequest() = %s, %v\nwant %s", got, err, want)
		}
		// The same properties as Props, in key order.
		for _, k := range slices.Sorted(maps.Keys(evs[0].Properties)) {
			evs[0].Props = append(evs[0].Props, Property{k, evs[0].Properties[k].(string)})
		}
		evs[0].Properties = nil
		if got, err := appendTrackRequest(nil, key, evs); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("appendTrackRequest(Props) = %s, %v\nwant %s", got, err, want)
		}
	})
}

func BenchmarkTrackBody(b *testing.B) {
	evs := make([]Event, MaxBatch)
	for i := range evs {
		evs[i] = Event{Identity: "user@example.com", Event: "Email Click", Timestamp: "2026-10-02T15:02:11.000Z",
			IdempotencyKey: "0123456789abcdef0123456789abcdef",
			Properties: map[string]any{"Campaign ID": "42694e9e57", "Campaign Title": "October product update",
				"List ID": "a6b5da1054", "URL": "https://example.com/pricing?utm_source=mailchimp&x=1",
				"IP": "198.51.100.7", "Time": "2026-10-02T15:02:11.000Z"}}
	}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(TrackRequest{AppID: "1", Events: evs}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendTrackRequest", func(b *testing.B) {
		for b.Loop() {
			if _, err := appendTrackRequest(make([]byte, 0, trackRequestSize("1", evs)), "1", evs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
