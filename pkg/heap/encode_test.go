package heap

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// mapEvent is an event as encoding/json writes it with its properties a
// map: the encoding AppendEvent reproduces byte for byte.
type mapEvent struct {
	Identity       string            `json:"identity"`
	Event          string            `json:"event"`
	Timestamp      string            `json:"timestamp,omitempty"`
	Properties     map[string]string `json:"properties,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
}

type mapRequest struct {
	AppID  string     `json:"app_id"`
	Events []mapEvent `json:"events"`
}

// fromMap is e as an Event: its properties in key order.
func fromMap(e mapEvent) Event {
	ev := Event{Identity: e.Identity, Event: e.Event, Timestamp: e.Timestamp, IdempotencyKey: e.IdempotencyKey}
	for _, k := range slices.Sorted(maps.Keys(e.Properties)) {
		ev.Properties = append(ev.Properties, Property{k, e.Properties[k]})
	}
	return ev
}

// checkEncoding: the events encode as encoding/json writes them as maps,
// through Track's body, TrackEncoded's and json.Marshal.
func checkEncoding(t *testing.T, appID string, mevs []mapEvent) {
	t.Helper()
	want, err := json.Marshal(mapRequest{AppID: appID, Events: mevs})
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	if mevs != nil {
		evs = []Event{}
	}
	var encoded [][]byte
	for _, m := range mevs {
		e := fromMap(m)
		evs = append(evs, e)
		b, err := AppendEvent(nil, e)
		if err != nil {
			t.Fatalf("AppendEvent(%+v): %v", e, err)
		}
		encoded = append(encoded, b)
		if j, err := json.Marshal(e); err != nil || !bytes.Equal(j, b) {
			t.Errorf("json.Marshal(%+v) = %s, %v; want AppendEvent's %s", e, j, err, b)
		}
	}
	if got, err := appendTrackRequest(nil, appID, evs); err != nil || !bytes.Equal(got, want) {
		t.Errorf("appendTrackRequest() = %s, %v\nwant %s", got, err, want)
	}
	if len(mevs) == 0 {
		return // never sent
	}
	if got := appendEncodedRequest(nil, appID, encoded); !bytes.Equal(got, want) {
		t.Errorf("appendEncodedRequest() = %s\nwant %s", got, want)
	}
}

func TestAppendTrackRequestMatchesMarshal(t *testing.T) {
	tests := []struct {
		name string
		evs  []mapEvent
	}{
		{"nil events", nil},
		{"no events", []mapEvent{}},
		{"bare event", []mapEvent{{Identity: "a", Event: "e"}}},
		{"every field", []mapEvent{{Identity: "ü@x", Event: "Email Open", Timestamp: "2026-10-02T15:02:11.000Z",
			Properties:     map[string]string{"Campaign ID": "c1", "URL": "https://x/?a=1&b=<2>", "Tags": "a,b", "Bounce Type": ""},
			IdempotencyKey: "k1"}, {Identity: "b", Event: "Email Click"}}},
		{"escapes", []mapEvent{{Identity: "q\"\\\b\f\n\r\t\x00\x1f\x7f", Event: "\u2028\u2029 \xff\xfe é 日本 🎉 <>&",
			Properties: map[string]string{"\x01key<": "v\u2029\xc3", "URL": "\u2028\xff", "Campaign ID": "c<1>"}}}},
		{"empty properties", []mapEvent{{Identity: "a", Event: "e", Properties: map[string]string{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkEncoding(t, "app<1>", tt.evs) })
	}
}

func TestAppendEventRefusesUnorderedProperties(t *testing.T) {
	for _, props := range [][]Property{
		{{"b", "1"}, {"a", "2"}},
		{{"a", "1"}, {"a", "2"}},
		{{"a", "1"}, {"c", "2"}, {"b", "3"}},
	} {
		if _, err := AppendEvent(nil, Event{Identity: "a", Event: "e", Properties: props}); err == nil {
			t.Errorf("AppendEvent with properties %v: want an error", props)
		}
		if _, err := appendTrackRequest(nil, "1", []Event{{Properties: props}}); err == nil {
			t.Errorf("appendTrackRequest with properties %v: want an error", props)
		}
	}
}

func FuzzAppendTrackRequest(f *testing.F) {
	f.Add("a@b.c", "Email Open", "https://x/?a=<1>&b", "k", "\u2028\xff")
	f.Add("", "", "", "", strings.Repeat("é", 3))
	f.Fuzz(func(t *testing.T, identity, event, url, key, value string) {
		checkEncoding(t, key, []mapEvent{{Identity: identity, Event: event, Timestamp: value, IdempotencyKey: key,
			Properties: map[string]string{"URL": url, key: value, value: identity}}})
	})
}

func BenchmarkTrackBody(b *testing.B) {
	m := mapEvent{Identity: "user@example.com", Event: "Email Click", Timestamp: "2026-10-02T15:02:11.000Z",
		IdempotencyKey: "0123456789abcdef0123456789abcdef",
		Properties: map[string]string{"Campaign ID": "42694e9e57", "Campaign Title": "October product update",
			"List ID": "a6b5da1054", "URL": "https://example.com/pricing?utm_source=mailchimp&x=1",
			"IP": "198.51.100.7", "Time": "2026-10-02T15:02:11.000Z"}}
	mevs, evs, encoded := make([]mapEvent, MaxBatch), make([]Event, MaxBatch), make([][]byte, MaxBatch)
	for i := range evs {
		mevs[i], evs[i] = m, fromMap(m)
		encoded[i], _ = AppendEvent(nil, evs[i])
	}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(mapRequest{AppID: "1", Events: mevs}); err != nil {
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
	b.Run("appendEncodedRequest", func(b *testing.B) {
		for b.Loop() {
			appendEncodedRequest(make([]byte, 0, encodedRequestSize("1", encoded)), "1", encoded)
		}
	})
}
