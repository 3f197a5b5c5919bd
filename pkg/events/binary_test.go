package events

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The hand-written encoding must be goavro's, byte for byte, both ways.
func TestBinaryMatchesGoavro(t *testing.T) {
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 10, 2, 14, 21, 9, 987654321, time.UTC)
	cases := map[string]Event{
		"empty": {},
		"full": {ID: "6f1c", SourceID: "acme", AppID: "1234", Identity: "Priya.Raman@Example.com", EmailKey: EmailKey("p@example.com"),
			Name: NameClick, Time: at, CampaignID: "b3f0a9c1d2", CampaignTitle: "October product update", ListID: "7c1e5d2a90",
			IP: "192.0.2.44", URL: "https://shop.example/p?q=1&r=ü", BounceType: "hard", Subject: "Your order 🚚", Tags: []string{"a", "", "ç"},
			Lineage: Lineage{Topic: "mailchimp.raw", Partition: 5, Offset: 1 << 40, Kind: "mandrill-event", RequestID: "r-1", ReceivedAt: at.Add(time.Second)}},
		"negative and pre-epoch": {ID: "x", Time: time.Date(1960, 1, 1, 0, 0, 0, 1e6, time.UTC), Lineage: Lineage{Partition: -1, Offset: -7}},
		"long strings":           {ID: string(bytes.Repeat([]byte("x"), 300)), Subject: string(bytes.Repeat([]byte("é"), 2000)), Tags: []string{string(bytes.Repeat([]byte("t"), 200))}},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := c.avro.BinaryFromNative(nil, Native(e))
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			// The header is the spec's, not goavro's (codec.go); the datum
			// is goavro's.
			if !bytes.Equal(got[:10], c.header) || !bytes.Equal(got[10:], want) {
				t.Fatalf("Encode() =\n% x\nheader and goavro's datum:\n% x % x", got, c.header, want)
			}
			native, _, err := c.avro.NativeFromBinary(want)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := c.Decode(append(bytes.Clone(c.header), want...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(fromNative(native.(map[string]any)), dec); diff != "" {
				t.Errorf("Decode() differs from goavro's (-goavro +got):\n%s", diff)
			}
		})
	}
}

// TestReaderLong: the one-byte fast path reads what binary.Varint reads,
// and longer varints still go the long way.
func TestReaderLong(t *testing.T) {
	inputs := [][]byte{{0x80, 0x01}, {0xff, 0xff, 0xff, 0xff, 0x0f}, binary.AppendVarint(nil, -1<<40)}
	for c := range 0x80 {
		inputs = append(inputs, []byte{byte(c)})
	}
	for _, in := range inputs {
		want, n := binary.Varint(in)
		r := &reader{b: in}
		if got := r.long(); got != want || r.err != nil || len(r.b) != len(in)-n {
			t.Errorf("long(% x) = %d (err %v, %d left), want %d", in, got, r.err, len(r.b), want)
		}
	}
}

// Times a timestamp-millis long holds encode as goavro encodes them and
// read back to the millisecond; the rest are ErrTimeRange, not a wrapped long.
func TestEncodeTimeRange(t *testing.T) {
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		time    time.Time
		inRange bool
	}{
		{"zero time.Time", time.Time{}, true},
		{"epoch", time.Unix(0, 0), true},
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), true},
		{"first millisecond", minMillis, true},
		{"last nanosecond of the last millisecond", maxMillis, true},
		{"a nanosecond before", minMillis.Add(-time.Nanosecond), false},
		{"a nanosecond after", maxMillis.Add(time.Nanosecond), false},
		{"year 300 million", time.Date(300_000_000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"year -300 million", time.Date(-300_000_000, 1, 1, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tc := range cases {
		for _, field := range []string{"time", "received_at"} {
			t.Run(tc.name+"/"+field, func(t *testing.T) {
				e := Event{ID: "x"}
				at := &e.Time
				if field == "received_at" {
					at = &e.Lineage.ReceivedAt
				}
				*at = tc.time
				got, err := c.Encode(e)
				if !tc.inRange {
					if !errors.Is(err, ErrTimeRange) {
						t.Fatalf("Encode() error %v, want ErrTimeRange", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want, err := c.avro.BinaryFromNative(nil, Native(e))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[len(c.header):], want) {
					t.Errorf("Encode() datum\n% x\ngoavro's\n% x", got[len(c.header):], want)
				}
				dec, err := c.Decode(got)
				if err != nil {
					t.Fatal(err)
				}
				back := dec.Time
				if field == "received_at" {
					back = dec.Lineage.ReceivedAt
				}
				if wantT := tc.time.Truncate(time.Millisecond); !back.Equal(wantT) {
					t.Errorf("read back %v, want %v", back, wantT)
				}
			})
		}
	}
}
