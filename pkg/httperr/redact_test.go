package httperr

import "testing"

func TestRedactAddresses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"no address here: 100% sure & done", "no address here: 100% sure & done"},
		{"alice@example.com", "[address]"},
		{`identity "Alice.Smith+vip@Sub.Example.CO.UK" refused`, `identity "[address]" refused`},
		{`{"error":"identity \"a@b.c\" blocked"}`, `{"error":"identity \"[address]\" blocked"}`},
		{"data%5Bemail%5D=jordan.lee%40example.com&type=x", "data%5Bemail%5D=[address]&type=x"},
		{`"jordan\u0040example.com"`, `"[address]"`},
		{"jordan&#64;example.com", "[address]"},
		{"<a@x>, (b@y); [c@z] {d@w}", "<[address]>, ([address]); [[address]] {[address]}"},
		{"cut short: alice@exam", "cut short: [address]"},
		{"a lone @ sign, and user@ alone", "a lone @ sign, and user@ alone"},
	} {
		if got := RedactAddresses(c.in); got != c.want {
			t.Errorf("RedactAddresses(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
