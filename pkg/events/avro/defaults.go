package avro

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// EncodeDefault returns the Avro binary encoding of a field's default
// value v (JSON as Parse keeps it) in type s: what a reader reads for a
// field its writer did not have. A union's default is the first branch it
// is a valid value of (the first branch, before Avro 1.12); bytes and fixed
// are strings of code points 0-255.
func EncodeDefault(s *Schema, v any) ([]byte, error) { return appendDefault(nil, s, v) }

func appendDefault(b []byte, s *Schema, v any) ([]byte, error) {
	bad := func() ([]byte, error) { return nil, fmt.Errorf("%s is not a %s", short(v), describe(s)) }
	switch s.Type {
	case Null:
		if v != nil {
			return bad()
		}
		return b, nil
	case Boolean:
		t, ok := v.(bool)
		if !ok {
			return bad()
		}
		if t {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case Int, Long:
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || (s.Type == Int && (i < math.MinInt32 || i > math.MaxInt32)) {
			return bad()
		}
		return binary.AppendVarint(b, i), nil
	case Float, Double:
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		f, err := strconv.ParseFloat(n.String(), 64)
		if err != nil {
			return bad()
		}
		if s.Type == Float {
			return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f))), nil
		}
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f)), nil
	case String:
		t, ok := v.(string)
		if !ok {
			return bad()
		}
		return append(binary.AppendVarint(b, int64(len(t))), t...), nil
	case Bytes, Fixed:
		t, ok := v.(string)
		if !ok {
			return bad()
		}
		raw := make([]byte, 0, len(t))
		for _, r := range t {
			if r > 255 {
				return bad()
			}
			raw = append(raw, byte(r))
		}
		if s.Type == Fixed {
			if len(raw) != s.Size {
				return bad()
			}
			return append(b, raw...), nil
		}
		return append(binary.AppendVarint(b, int64(len(raw))), raw...), nil
	case Enum:
		t, ok := v.(string)
		i := slices.Index(s.Symbols, t)
		if !ok || i < 0 {
			return bad()
		}
		return binary.AppendVarint(b, int64(i)), nil
	case Array:
		list, ok := v.([]any)
		if !ok {
			return bad()
		}
		return appendDefaultArray(b, s, list)
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		return appendDefaultMap(b, s, m)
	case Record:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		return appendDefaultRecord(b, s, m)
	case Union:
		for i, t := range s.Types {
			if out, err := appendDefault(binary.AppendVarint(slices.Clip(b), int64(i)), t, v); err == nil {
				return out, nil
			}
		}
		return bad()
	}
	return nil, fmt.Errorf("unknown type %s", s.Type)
}

// appendDefaultArray appends list as s's items: one block, then the end.
func appendDefaultArray(b []byte, s *Schema, list []any) ([]byte, error) {
	if len(list) > 0 {
		b = binary.AppendVarint(b, int64(len(list)))
		for _, x := range list {
			var err error
			if b, err = appendDefault(b, s.Items, x); err != nil {
				return nil, err
			}
		}
	}
	return append(b, 0), nil
}

// appendDefaultMap appends m as s's values, keys sorted so the bytes are
// the same every time.
func appendDefaultMap(b []byte, s *Schema, m map[string]any) ([]byte, error) {
	if len(m) > 0 {
		b = binary.AppendVarint(b, int64(len(m)))
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = append(binary.AppendVarint(b, int64(len(k))), k...)
			var err error
			if b, err = appendDefault(b, s.Values, m[k]); err != nil {
				return nil, err
			}
		}
	}
	return append(b, 0), nil
}

// appendDefaultRecord appends m's fields in s's order, a missing one as its
// own default.
func appendDefaultRecord(b []byte, s *Schema, m map[string]any) ([]byte, error) {
	for _, f := range s.Fields {
		x, ok := m[f.Name]
		if !ok {
			if !f.HasDefault {
				return nil, fmt.Errorf("%s: field %s has no value and no default", s.Name, f.Name)
			}
			x = f.Default
		}
		var err error
		if b, err = appendDefault(b, f.Type, x); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func describe(s *Schema) string {
	if s.Name != "" {
		return s.Type + " " + s.Name
	}
	return s.Type
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
