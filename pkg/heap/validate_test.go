package heap

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckProperties(t *testing.T) {
	for _, c := range []struct {
		name  string
		props map[string]any
		want  string // in the error; "" for none
	}{
		{"none", nil, ""},
		{"strings and numbers", map[string]any{"a": "x", "n": json.Number("-1.5e3")}, ""},
		{"longest key and value", map[string]any{strings.Repeat("k", 1023): strings.Repeat("日", 1023)}, ""},
		{"empty key", map[string]any{"": "x"}, "property key must be 1 to 1023 characters"},
		{"long key", map[string]any{strings.Repeat("k", 1024): "x"}, "property key must be 1 to 1023 characters"},
		{"long value", map[string]any{"k": strings.Repeat("x", 1024)}, `property "k" value of 1024 characters, limit 1023`},
		{"long number", map[string]any{"n": json.Number(strings.Repeat("1", 1024))}, `property "n" number of 1024 characters, limit 1023`},
		{"bool", map[string]any{"b": true}, `property "b" must be a string or a number, got bool`},
		{"null", map[string]any{"z": nil}, `property "z" must be a string or a number, got <nil>`},
		{"object", map[string]any{"o": map[string]any{}}, `property "o" must be a string or a number`},
		{"float64, not decoded with UseNumber", map[string]any{"f": 1.5}, `property "f" must be a string or a number, got float64`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckProperties(c.props)
			if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("CheckProperties = %v, want %q", err, c.want)
			}
		})
	}
}
