package heap

// Truncation and the timestamp format: what every event value passes
// through before it is encoded.

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int // runes in the result
	}{
		{"empty", "", 0},
		{"short ascii", "hello", 5},
		{"short multibyte", "héllo wörld 日本 🎉", 16},
		{"ascii at limit", strings.Repeat("a", 1023), 1023},
		{"ascii one over", strings.Repeat("a", 1024), 1023},
		{"ascii long", strings.Repeat("abc", 5000), 1023},
		{"two-byte at limit", strings.Repeat("é", 1023), 1023},
		{"two-byte one over", strings.Repeat("é", 1024), 1023},
		{"three-byte long", strings.Repeat("日", 3000), 1023},
		{"four-byte long", strings.Repeat("🎉", 2000), 1023},
		{"mixed widths long", strings.Repeat("a日🎉é", 600), 1023},
		{"under limit in runes, over in bytes", strings.Repeat("🎉", 1000), 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.in)
			if n := utf8.RuneCountInString(got); n != tt.want {
				t.Errorf("Truncate: %d runes, want %d", n, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > MaxValueLen {
				t.Errorf("Truncate: %d runes, over the %d limit", n, MaxValueLen)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Truncate: result is not valid UTF-8")
			}
			if !strings.HasPrefix(tt.in, got) {
				t.Errorf("Truncate: result is not a prefix of the input")
			}
			if utf8.RuneCountInString(tt.in) <= MaxValueLen && got != tt.in {
				t.Errorf("Truncate changed a short string: %q -> %q", tt.in, got)
			}
		})
	}
}

func TestTimestamp(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"utc with millis", time.Date(2024, 3, 5, 7, 8, 9, 123_000_000, time.UTC), "2024-03-05T07:08:09.123Z"},
		{"whole second keeps .000", time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC), "2024-03-05T07:08:09.000Z"},
		{"sub-millisecond truncated", time.Date(2024, 3, 5, 7, 8, 9, 999_999_999, time.UTC), "2024-03-05T07:08:09.999Z"},
		{"offset zone converted to UTC", time.Date(2024, 3, 5, 1, 0, 0, 5_000_000, time.FixedZone("x", 2*3600)), "2024-03-04T23:00:00.005Z"},
		{"negative offset across new year", time.Date(2023, 12, 31, 23, 30, 0, 0, time.FixedZone("y", -5*3600)), "2024-01-01T04:30:00.000Z"},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 1_000_000, time.UTC), "0001-01-01T00:00:00.001Z"},
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), "9999-12-31T23:59:59.999Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendTimestamp(nil, tt.in))
			if got != tt.want {
				t.Errorf("AppendTimestamp(%v) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := time.Parse(time.RFC3339Nano, got)
			if err != nil {
				t.Fatalf("AppendTimestamp(%v) = %q is not RFC 3339: %v", tt.in, got, err)
			}
			if d := tt.in.Sub(back); d < 0 || d >= time.Millisecond {
				t.Errorf("AppendTimestamp(%v) round-trips to %v, %v away", tt.in, back, d)
			}
		})
	}
}

func FuzzTimestamp(f *testing.F) {
	f.Add(int64(1759413999999), int64(0))
	f.Add(int64(-62135596800000), int64(3600))
	f.Fuzz(func(t *testing.T, ms, offset int64) {
		in := time.UnixMilli(ms).Add(time.Duration(ms%1000) * time.Microsecond).In(time.FixedZone("z", int(offset%86400)))
		if got, want := string(AppendTimestamp(nil, in)), in.UTC().Format(TimestampLayout); got != want {
			t.Fatalf("AppendTimestamp(%v) = %q, want %q", in, got, want)
		}
	})
}

// captured is one request as a test server saw it.
