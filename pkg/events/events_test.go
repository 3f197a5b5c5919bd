package events_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
)

func newCodec(t *testing.T) *events.Codec {
	t.Helper()
	c, err := events.NewCodec()
	if err != nil {
		t.Fatalf("NewCodec() error = %v", err)
	}
	return c
}

// fullEvent is an event with every field set, then changed by edits.
func fullEvent(edits ...func(e *events.Event)) events.Event {
	e := events.Event{
		ID:            events.ID("app1", "activity", "b3f0a9c1d2", "open", "2026-10-02T15:02:11Z", "jordan.lee@example.com"),
		SourceID:      "acme",
		AppID:         "app1",
		Identity:      "jordan.lee@example.com",
		EmailKey:      events.EmailKey("jordan.lee@example.com"),
		Name:          events.NameClick,
		Time:          time.Date(2026, 10, 2, 15, 2, 40, 123_000_000, time.UTC),
		CampaignID:    "b3f0a9c1d2",
		CampaignTitle: "October product update",
		ListID:        "7c1e5d2a90",
		IP:            "192.0.2.44",
		URL:           "https://shop.example/october?utm_source=mailchimp&utm_campaign=oct",
		BounceType:    "",
		Subject:       "October product update (subject)",
		Tags:          []string{"shipping", "", "ünïcødé ✉"},
		Lineage: events.Lineage{
			Topic: "mailchimp.raw", Partition: 5, Offset: 1<<40 + 7, Kind: "email-activity",
			RequestID: "01J9Z6", ReceivedAt: time.Date(2026, 10, 2, 15, 5, 0, 999_000_000, time.UTC),
		},
	}
	for _, edit := range edits {
		edit(&e)
	}
	return e
}

func TestCodecRoundTrip(t *testing.T) {
	paris := time.FixedZone("CEST", 2*3600)
	tests := []struct {
		name string
		in   events.Event
		want events.Event // zero: same as in
	}{
		{name: "every field", in: fullEvent()},
		{
			name: "optional fields empty, no tags",
			in: events.Event{
				ID: "0123456789abcdef0123456789abcdef", SourceID: "acme", AppID: "app1", EmailKey: emailKeyOf("a@example.com"),
				Name: events.NameOpen, Time: time.Date(2026, 10, 2, 15, 2, 11, 0, time.UTC),
				Lineage: events.Lineage{Topic: "mailchimp.raw", Kind: "list-webhook", ReceivedAt: time.Date(2026, 10, 2, 15, 2, 12, 0, time.UTC)},
			},
		},
		{
			name: "pending event: empty identity",
			in:   fullEvent(func(e *events.Event) { e.Identity = "" }),
		},
		{
			name: "bounce with one tag",
			in: fullEvent(func(e *events.Event) {
				e.Name, e.BounceType, e.URL, e.Tags = events.NameBounce, "hard", "", []string{"auth"}
			}),
		},
		{
			name: "times come back in UTC",
			in: fullEvent(func(e *events.Event) {
				e.Time = time.Date(2026, 10, 2, 17, 2, 40, 0, paris)
				e.Lineage.ReceivedAt = time.Date(2026, 10, 2, 17, 5, 0, 0, paris)
			}),
			want: fullEvent(func(e *events.Event) {
				e.Time = time.Date(2026, 10, 2, 15, 2, 40, 0, time.UTC)
				e.Lineage.ReceivedAt = time.Date(2026, 10, 2, 15, 5, 0, 0, time.UTC)
			}),
		},
		{
			name: "times are kept to the millisecond",
			in:   fullEvent(func(e *events.Event) { e.Time = time.Date(2026, 10, 2, 15, 2, 40, 123_456_789, time.UTC) }),
			want: fullEvent(func(e *events.Event) { e.Time = time.Date(2026, 10, 2, 15, 2, 40, 123_000_000, time.UTC) }),
		},
		{
			name: "times before 1970",
			in:   fullEvent(func(e *events.Event) { e.Time = time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC) }),
		},
		{
			name: "zero lineage",
			in:   fullEvent(func(e *events.Event) { e.Lineage = events.Lineage{} }),
		},
		{
			name: "negative partition and offset",
			in:   fullEvent(func(e *events.Event) { e.Lineage.Partition, e.Lineage.Offset = -1, -1 }),
		},
	}
	c := newCodec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := c.Encode(tt.in)
			if err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			got, err := c.Decode(b)
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			want := tt.want
			if want.ID == "" {
				want = tt.in
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
			if got.Time.Location() != time.UTC || got.Lineage.ReceivedAt.Location() != time.UTC {
				t.Errorf("decoded times not in UTC: %v, %v", got.Time.Location(), got.Lineage.ReceivedAt.Location())
			}
		})
	}
}

func TestCodecEmptyTags(t *testing.T) {
	// nil and empty tags both encode as an empty array and decode as nil.
	c := newCodec(t)
	for _, tags := range [][]string{nil, {}} {
		e := fullEvent()
		e.Tags = tags
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Tags != nil {
			t.Errorf("tags %#v decoded as %#v, want nil", tags, got.Tags)
		}
	}
}

func TestCodecSingleObjectEncoding(t *testing.T) {
	c := newCodec(t)
	a, err := c.Encode(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	other := fullEvent()
	other.ID, other.Tags = "x", nil
	b, err := c.Encode(other)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range [][]byte{a, b} {
		if len(enc) < 10 || enc[0] != 0xC3 || enc[1] != 0x01 {
			t.Fatalf("Encode() = % x..., want the single-object marker c3 01 and an 8-byte fingerprint", enc[:min(len(enc), 10)])
		}
	}
	// The same schema, the same fingerprint.
	if !bytes.Equal(a[2:10], b[2:10]) {
		t.Errorf("fingerprints differ: % x vs % x", a[2:10], b[2:10])
	}
	// Deterministic bytes for the same event.
	again, _ := c.Encode(fullEvent())
	if !bytes.Equal(a, again) {
		t.Errorf("Encode() is not deterministic")
	}
}

func TestCodecDecodeGarbage(t *testing.T) {
	c := newCodec(t)
	good, err := c.Encode(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	badFingerprint := bytes.Clone(good)
	badFingerprint[5] ^= 0xFF
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "nil", b: nil},
		{name: "empty", b: []byte{}},
		{name: "marker only", b: []byte{0xC3, 0x01}},
		{name: "marker and fingerprint only", b: good[:10]},
		{name: "wrong marker", b: append([]byte{0xC3, 0x02}, good[2:]...)},
		{name: "json", b: []byte(`{"event_id":"x"}`)},
		{name: "confluent wire format", b: append([]byte{0, 0, 0, 0, 1}, good[10:]...)},
		{name: "unknown fingerprint", b: badFingerprint},
		{name: "truncated", b: good[:len(good)-3]},
		{name: "trailing bytes", b: append(bytes.Clone(good), 0x00)},
		{name: "two events", b: append(bytes.Clone(good), good...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decode(tt.b)
			if err == nil {
				t.Errorf("Decode() of %d bytes = event %q, want error", len(tt.b), got.ID)
			}
		})
	}
}

// TestCodecViews: DecodeView reads what Decode reads and RouteView its
// leading fields, and each fails on input cut short or garbled.
func TestCodecViews(t *testing.T) {
	c := newCodec(t)
	pending := fullEvent()
	pending.Identity = ""
	for _, e := range []events.Event{fullEvent(), pending} {
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := c.Decode(b)
		got, err := c.DecodeView(b)
		if diff := cmp.Diff(want, got); err != nil || diff != "" {
			t.Errorf("DecodeView: %v (-Decode +DecodeView):\n%s", err, diff)
		}
		route := events.Route{ID: e.ID, SourceID: e.SourceID, AppID: e.AppID, Identity: e.Identity, Name: e.Name, Time: want.Time}
		if got, err := c.RouteView(b); err != nil || got != route {
			t.Errorf("RouteView() = %+v, %v; want %+v", got, err, route)
		}
	}
	good, _ := c.Encode(fullEvent())
	bad := [][]byte{nil, good[:10], good[:12], good[:20], []byte(`{"event_id":"x"}`)}
	for _, b := range bad {
		if _, err := c.RouteView(b); err == nil {
			t.Errorf("RouteView() of %d bytes: want error", len(b))
		}
	}
	for _, b := range append(bad, good[:len(good)-1], append(slices.Clone(good), 0)) {
		if _, err := c.DecodeView(b); err == nil {
			t.Errorf("DecodeView() of %d bytes: want error", len(b))
		}
	}
}

func TestCodecConcurrentUse(t *testing.T) {
	c := newCodec(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := fullEvent()
			e.Lineage.Offset = int64(i)
			for range 50 {
				b, err := c.Encode(e)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := c.Decode(b)
				if err != nil {
					t.Error(err)
					return
				}
				if got.Lineage.Offset != int64(i) {
					t.Errorf("offset %d came back as %d", i, got.Lineage.Offset)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestID(t *testing.T) {
	base := events.ID("app1", "bounce", "b3f0a9c1d2", "priya.raman@example.com")
	if len(base) != 32 {
		t.Fatalf("ID() = %q, want 32 hex digits", base)
	}
	if _, err := hex.DecodeString(base); err != nil {
		t.Fatalf("ID() = %q is not hex: %v", base, err)
	}
	tests := []struct {
		name  string
		a, b  []string
		equal bool
	}{
		{name: "deterministic", a: []string{"app1", "x", "y"}, b: []string{"app1", "x", "y"}, equal: true},
		{name: "part boundaries matter", a: []string{"a", "bc"}, b: []string{"ab", "c"}, equal: false},
		{name: "empty part is a part", a: []string{"a", ""}, b: []string{"a"}, equal: false},
		{name: "empty parts in different places", a: []string{"", "a"}, b: []string{"a", ""}, equal: false},
		{name: "order matters", a: []string{"a", "b"}, b: []string{"b", "a"}, equal: false},
		{name: "app separates", a: []string{"app1", "e"}, b: []string{"app2", "e"}, equal: false},
		{name: "case matters in raw parts", a: []string{"A"}, b: []string{"a"}, equal: false},
		{name: "separator byte inside a part", a: []string{"a\x1fb"}, b: []string{"a", "b"}, equal: true},
		{name: "no parts vs one empty part", a: nil, b: []string{""}, equal: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := events.ID(tt.a...), events.ID(tt.b...)
			if (a == b) != tt.equal {
				t.Errorf("ID(%q) = %s, ID(%q) = %s, want equal=%v", tt.a, a, tt.b, b, tt.equal)
			}
		})
	}
}

func emailKeyOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestEmailKey(t *testing.T) {
	want := emailKeyOf("priya.raman@example.com")
	tests := []struct {
		email string
		want  string
	}{
		{"priya.raman@example.com", want},
		{"Priya.Raman@Example.com", want},
		{"PRIYA.RAMAN@EXAMPLE.COM", want},
		{"  priya.raman@example.com\t\r\n", want},
		{" Priya.Raman@Example.com ", want},
		{"priya.raman@example.org", emailKeyOf("priya.raman@example.org")},
		{"priya raman@example.com", emailKeyOf("priya raman@example.com")}, // inner space is kept
		{"", emailKeyOf("")},
	}
	for _, tt := range tests {
		if got := events.EmailKey(tt.email); got != tt.want {
			t.Errorf("EmailKey(%q) = %s, want %s", tt.email, got, tt.want)
		}
	}
	if events.EmailKey("a@example.com") == events.EmailKey("b@example.com") {
		t.Error("different addresses share a key")
	}
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		email string
		lower bool
		want  string
	}{
		{" Priya.Raman@Example.com\n", true, "priya.raman@example.com"},
		{" Priya.Raman@Example.com\n", false, "Priya.Raman@Example.com"},
		{"", true, ""},
	}
	for _, tt := range tests {
		if got := events.NormalizeEmail(tt.email, tt.lower); got != tt.want {
			t.Errorf("NormalizeEmail(%q, %v) = %q, want %q", tt.email, tt.lower, got, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	e := events.Event{AppID: "app1", Identity: "Jordan", EmailKey: "k", ID: "e1"}
	if got := string(e.Key()); got != "app1\x00Jordan" {
		t.Errorf("Key() = %q", got)
	}
	if got := string(e.PendingKey()); got != "app1\x00k\x00e1" {
		t.Errorf("PendingKey() = %q", got)
	}
	// The separator keeps ("a", "b c") and ("a b", "c") apart.
	x := events.Event{AppID: "ap", Identity: "p1x"}
	y := events.Event{AppID: "app", Identity: "1x"}
	if bytes.Equal(x.Key(), y.Key()) {
		t.Errorf("keys collide: %q", x.Key())
	}
}

// TestIDStable pins ids and email keys to their definition (sha256 of the
// parts, each followed by 0x1f; of the normalized address): a change would
// give every replayed event a new id, and Heap a second copy.
func TestIDStable(t *testing.T) {
	long := strings.Repeat("x", 300) // past ID's stack buffer
	for _, parts := range [][]string{
		{"app1", "mandrill", "m1", "open", "2026-10-02T15:02:11Z", "jordan.lee@example.com"},
		{"app1", "bounce", "b3f0a9c1d2", "priya.raman@example.com", "replay-salt", "s"},
		{"", long, "é"},
		{},
	} {
		h := sha256.New()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0x1f})
		}
		if got, want := events.ID(parts...), hex.EncodeToString(h.Sum(nil)[:16]); got != want {
			t.Errorf("ID(%q) = %s, want %s", parts, got, want)
		}
	}
	for _, email := range []string{" Jordan.Lee@Example.com ", "a@b", long + "@example.com", ""} {
		sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
		if got, want := events.EmailKey(email), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("EmailKey(%q) = %s, want %s", email, got, want)
		}
	}
}
