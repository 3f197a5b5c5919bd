package events

import (
	"bytes"
	"encoding/binary"
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
