package avro_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
)

func parse(t testing.TB, s string) *avro.Schema {
	t.Helper()
	p, err := avro.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return p
}

func goavroCodec(t testing.TB, s string) *goavro.Codec {
	t.Helper()
	c, err := goavro.NewCodec(s)
	if err != nil {
		t.Fatalf("goavro.NewCodec(%s): %v", s, err)
	}
	return c
}

func record(name string, fields ...string) string {
	return `{"type":"record","name":"` + name + `","fields":[` + strings.Join(fields, ",") + `]}`
}

// resolveCases: a datum goavro writes with the writer's schema, resolved,
// and read by goavro with the reader's schema.
var resolveCases = []struct {
	name           string
	writer, reader string
	datum, want    map[string]any
}{
	{
		name:   "same schema",
		writer: record("R", `{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`),
		reader: record("R", `{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`),
		datum:  map[string]any{"a": int32(-7), "b": "ü"},
		want:   map[string]any{"a": int32(-7), "b": "ü"},
	},
	{
		name:   "reader adds fields with defaults",
		writer: record("R", `{"name":"a","type":"int"}`),
		reader: record("R",
			`{"name":"s","type":"string","default":"d"}`,
			`{"name":"a","type":"int"}`,
			`{"name":"n","type":["null","string"],"default":null}`,
			`{"name":"arr","type":{"type":"array","items":"string"},"default":["x","y"]}`,
			`{"name":"m","type":{"type":"map","values":"int"},"default":{"k":1,"j":2}}`,
			`{"name":"rec","type":{"type":"record","name":"R2","fields":[{"name":"x","type":"int","default":5},{"name":"y","type":"string"}]},"default":{"y":"why"}}`,
			`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"B"}`,
			`{"name":"fx","type":{"type":"fixed","name":"F","size":2},"default":"ab"}`,
			`{"name":"d","type":"double","default":1.5}`,
			`{"name":"f","type":"float","default":2.5}`,
			`{"name":"l","type":"long","default":-9007199254740993}`,
			`{"name":"b","type":"boolean","default":true}`,
			`{"name":"by","type":"bytes","default":"\u00ff\u0001"}`,
			`{"name":"u2","type":["string","null"],"default":"z"}`),
		datum: map[string]any{"a": int32(3)},
		want: map[string]any{"s": "d", "a": int32(3), "n": nil, "arr": []any{"x", "y"}, "m": map[string]any{"k": int32(1), "j": int32(2)},
			"rec": map[string]any{"x": int32(5), "y": "why"}, "e": "B", "fx": []byte("ab"), "d": 1.5, "f": float32(2.5),
			"l": int64(-9007199254740993), "b": true, "by": []byte{0xff, 0x01}, "u2": map[string]any{"string": "z"}},
	},
	{
		name: "writer's extra fields are dropped",
		writer: record("R",
			`{"name":"s","type":"string"}`,
			`{"name":"a","type":"int"}`,
			`{"name":"n","type":["null","string"]}`,
			`{"name":"arr","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"q","type":"long"}]}}}`,
			`{"name":"m","type":{"type":"map","values":["null","double"]}}`,
			`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`,
			`{"name":"fx","type":{"type":"fixed","name":"F","size":3}}`,
			`{"name":"f","type":"float"}`,
			`{"name":"b","type":"boolean"}`,
			`{"name":"by","type":"bytes"}`,
			`{"name":"z","type":"long"}`),
		reader: record("R", `{"name":"a","type":"int"}`, `{"name":"z","type":"long"}`),
		datum: map[string]any{"s": "dropped", "a": int32(1), "n": goavro.Union("string", "x"),
			"arr": []any{map[string]any{"q": int64(1)}, map[string]any{"q": int64(-1 << 40)}},
			"m":   map[string]any{"a": nil, "b": goavro.Union("double", 2.5)}, "e": "B", "fx": []byte("abc"),
			"f": float32(1), "b": true, "by": []byte{0, 1, 2}, "z": int64(42)},
		want: map[string]any{"a": int32(1), "z": int64(42)},
	},
	{
		name:   "fields in another order, a default between",
		writer: record("R", `{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`, `{"name":"c","type":"long"}`),
		reader: record("R", `{"name":"c","type":"long"}`, `{"name":"d","type":"string","default":"dd"}`, `{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`),
		datum:  map[string]any{"a": int32(1), "b": "bee", "c": int64(3)},
		want:   map[string]any{"c": int64(3), "d": "dd", "a": int32(1), "b": "bee"},
	},
	{
		name: "promotions",
		writer: record("R", `{"name":"i","type":"int"}`, `{"name":"l","type":"long"}`, `{"name":"f","type":"float"}`,
			`{"name":"s","type":"string"}`, `{"name":"b","type":"bytes"}`, `{"name":"i2","type":"int"}`, `{"name":"l2","type":"long"}`,
			`{"name":"i3","type":"int"}`, `{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}`),
		reader: record("R", `{"name":"i","type":"long"}`, `{"name":"l","type":"double"}`, `{"name":"f","type":"double"}`,
			`{"name":"s","type":"bytes"}`, `{"name":"b","type":"string"}`, `{"name":"i2","type":"float"}`, `{"name":"l2","type":"float"}`,
			`{"name":"i3","type":"double"}`, `{"name":"t","type":"long"}`),
		datum: map[string]any{"i": int32(-5), "l": int64(1 << 40), "f": float32(0.5), "s": "str", "b": []byte("byt"),
			"i2": int32(7), "l2": int64(-3), "i3": int32(1 << 30), "t": int64(1759413912345)},
		want: map[string]any{"i": int64(-5), "l": float64(1 << 40), "f": 0.5, "s": []byte("str"), "b": "byt",
			"i2": float32(7), "l2": float32(-3), "i3": float64(1 << 30), "t": int64(1759413912345)},
	},
	{
		name: "unions",
		writer: record("R", `{"name":"u","type":["null","string"]}`, `{"name":"v","type":"string"}`,
			`{"name":"w","type":["null","int"]}`, `{"name":"x","type":"int"}`, `{"name":"y","type":["int","long"]}`,
			`{"name":"z","type":["null","string"]}`),
		reader: record("R", `{"name":"u","type":["string","null"]}`, `{"name":"v","type":["null","string"]}`,
			`{"name":"w","type":["null","long"]}`, `{"name":"x","type":["null","string","double"]}`, `{"name":"y","type":"double"}`,
			`{"name":"z","type":["string","null"]}`),
		datum: map[string]any{"u": goavro.Union("string", "hi"), "v": "vee", "w": goavro.Union("int", int32(9)), "x": int32(4),
			"y": goavro.Union("long", int64(8)), "z": nil},
		want: map[string]any{"u": goavro.Union("string", "hi"), "v": goavro.Union("string", "vee"), "w": goavro.Union("long", int64(9)),
			"x": goavro.Union("double", 4.0), "y": 8.0, "z": nil},
	},
	{
		name:   "enums by symbol, an unknown one as the reader's default",
		writer: record("R", `{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`, `{"name":"g","type":{"type":"enum","name":"G","symbols":["A","X"]}}`),
		reader: record("R", `{"name":"e","type":{"type":"enum","name":"E","symbols":["C","D","B","A"]}}`, `{"name":"g","type":{"type":"enum","name":"G","symbols":["A","B"],"default":"B"}}`),
		datum:  map[string]any{"e": "A", "g": "X"},
		want:   map[string]any{"e": "A", "g": "B"},
	},
	{
		name:   "recursive record, a field added at every level",
		writer: `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}`,
		reader: `{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"tag","type":"string","default":"t"},{"name":"next","type":["null","Node"],"default":null}]}`,
		datum:  map[string]any{"v": int32(1), "next": goavro.Union("Node", map[string]any{"v": int32(2), "next": nil})},
		want: map[string]any{"v": int64(1), "tag": "t", "next": goavro.Union("Node",
			map[string]any{"v": int64(2), "tag": "t", "next": nil})},
	},
	{
		name:   "aliases and namespaces",
		writer: `{"type":"record","name":"a.R","fields":[{"name":"old","type":"string"},{"name":"r","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}}]}`,
		reader: `{"type":"record","name":"b.R","fields":[{"name":"new","type":"string","aliases":["old"]},{"name":"r","type":{"type":"record","name":"Renamed","aliases":["a.Inner"],"fields":[{"name":"x","type":"int"}]}}]}`,
		datum:  map[string]any{"old": "o", "r": map[string]any{"x": int32(1)}},
		want:   map[string]any{"new": "o", "r": map[string]any{"x": int32(1)}},
	},
	{
		name:   "maps and arrays resolve their values",
		writer: record("R", `{"name":"m","type":{"type":"map","values":{"type":"array","items":"int"}}}`),
		reader: record("R", `{"name":"m","type":{"type":"map","values":{"type":"array","items":["null","long"]}}}`),
		datum:  map[string]any{"m": map[string]any{"k": []any{int32(1), int32(-2)}, "e": []any{}}},
		want:   map[string]any{"m": map[string]any{"k": []any{goavro.Union("long", int64(1)), goavro.Union("long", int64(-2))}, "e": []any{}}},
	},
}

func TestResolve(t *testing.T) {
	for _, tt := range resolveCases {
		t.Run(tt.name, func(t *testing.T) {
			bin, err := goavroCodec(t, tt.writer).BinaryFromNative(nil, tt.datum)
			if err != nil {
				t.Fatal(err)
			}
			r, err := avro.NewResolver(parse(t, tt.writer), parse(t, tt.reader))
			if err != nil {
				t.Fatal(err)
			}
			trailer := []byte{0xAA, 0xBB}
			out, rest, err := r.Append([]byte("prefix"), append(bin, trailer...))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rest, trailer) {
				t.Errorf("rest = % x, want the trailer", rest)
			}
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatalf("Append dropped dst")
			}
			got, left, err := goavroCodec(t, tt.reader).NativeFromBinary(out[len("prefix"):])
			if err != nil || len(left) > 0 {
				t.Fatalf("goavro cannot read the resolved datum with the reader's schema: %v (%d bytes left)", err, len(left))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resolved (-want +got):\n%s", diff)
			}
			// Every datum cut short is an error, never a panic.
			for i := range bin {
				if _, _, err := r.Append(nil, bin[:i]); err == nil && i < len(bin) {
					if _, _, gerr := goavroCodec(t, tt.writer).NativeFromBinary(bin[:i]); gerr != nil {
						t.Errorf("Append of %d of %d bytes succeeded; goavro: %v", i, len(bin), gerr)
					}
				}
			}
		})
	}
}

// TestResolveBlocks: arrays and maps in several blocks, with negative
// counts and byte sizes, as other writers send them.
func TestResolveBlocks(t *testing.T) {
	w := `{"type":"array","items":"string"}`
	r, err := avro.NewResolver(parse(t, w), parse(t, `{"type":"array","items":"bytes"}`))
	if err != nil {
		t.Fatal(err)
	}
	var in []byte
	in = binary.AppendVarint(in, -2) // two items, then their size
	in = binary.AppendVarint(in, 4)
	in = append(in, 2, 'a', 2, 'b')
	in = binary.AppendVarint(in, 1)
	in = append(in, 2, 'c', 0)
	out, rest, err := r.Append(nil, in)
	if err != nil || len(rest) > 0 {
		t.Fatalf("Append: %v, %d left", err, len(rest))
	}
	got, _, err := goavroCodec(t, `{"type":"array","items":"bytes"}`).NativeFromBinary(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{[]byte("a"), []byte("b"), []byte("c")}, got); diff != "" {
		t.Error(diff)
	}
	// A hostile count of zero-width items is refused, not spun through.
	nulls, err := avro.NewResolver(parse(t, `{"type":"array","items":"null"}`), parse(t, `{"type":"array","items":"null"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := nulls.Append(nil, binary.AppendVarint(nil, 1<<40)); !errors.Is(err, avro.ErrTruncated) {
		t.Errorf("Append of 2^40 nulls: %v, want ErrTruncated", err)
	}
}

func TestResolveRefuses(t *testing.T) {
	tests := []struct{ name, writer, reader, problem string }{
		{"a reader field without default the writer lacks", record("R", `{"name":"a","type":"int"}`),
			record("R", `{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`), "R.b: the writer lacks the field"},
		{"string read as int", record("R", `{"name":"a","type":"string"}`), record("R", `{"name":"a","type":"int"}`), "R.a: the writer's string cannot be read as int"},
		{"long read as int", `"long"`, `"int"`, "cannot be read as int"},
		{"double read as float", `"double"`, `"float"`, "cannot be read as float"},
		{"a nullable writer, a reader without null", `["null","string"]`, `"string"`, "the writer's null cannot be read as string"},
		{"a reader union without the type", `"int"`, `["null","string"]`, "no branch for the writer's int"},
		{"enum symbol unknown, no default", `{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"enum","name":"E","symbols":["A"]}`, "lacks symbol B"},
		{"fixed sizes", `{"type":"fixed","name":"F","size":2}`, `{"type":"fixed","name":"F","size":3}`, "fixed F has 2 bytes"},
		{"record names", record("R"), record("S"), "record R cannot be read as record S"},
		{"an invalid default", record("R"), record("R", `{"name":"a","type":"int","default":"x"}`), "R.a: invalid default"},
		{"array items", `{"type":"array","items":"string"}`, `{"type":"array","items":"int"}`, "R[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := avro.NewResolver(parse(t, tt.writer), parse(t, tt.reader))
			var inc *avro.Incompatible
			if !errors.As(err, &inc) {
				t.Fatalf("NewResolver: %v, want *Incompatible", err)
			}
			if tt.name != "array items" && !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("error %q, want it to say %q", err, tt.problem)
			}
		})
	}
}

func TestCheckLevels(t *testing.T) {
	v1 := parse(t, record("R", `{"name":"a","type":"int"}`))
	v2 := parse(t, record("R", `{"name":"a","type":"int"}`, `{"name":"b","type":["null","string"],"default":null}`))
	v3 := parse(t, record("R", `{"name":"b","type":["null","string"],"default":null}`)) // a dropped: v1 cannot read it
	noDefault := parse(t, record("R", `{"name":"a","type":"int"}`, `{"name":"c","type":"string"}`))
	tests := []struct {
		level     string
		candidate *avro.Schema
		earlier   []*avro.Schema
		ok        bool
	}{
		{avro.FullTransitive, v2, []*avro.Schema{v1}, true},
		{avro.Full, v3, []*avro.Schema{v1, v2}, false}, // v2 cannot read v3 (no default for a)
		{avro.Backward, v3, []*avro.Schema{v1, v2}, true},
		{avro.Backward, noDefault, []*avro.Schema{v1}, false},
		{avro.Forward, noDefault, []*avro.Schema{v1}, true},
		{avro.ForwardTransitive, v3, []*avro.Schema{v1, v2}, false},
		{avro.None, noDefault, []*avro.Schema{v3}, true},
	}
	for _, tt := range tests {
		if err := avro.Check(tt.level, tt.candidate, tt.earlier); (err == nil) != tt.ok {
			t.Errorf("Check(%s): %v, want ok=%v", tt.level, err, tt.ok)
		}
	}
	if err := avro.Check("SIDEWAYS", v1, nil); err == nil {
		t.Error("an unknown level passed")
	}
	if err := avro.FullyCompatible([]*avro.Schema{v1, v2}); err != nil {
		t.Error(err)
	}
	if err := avro.FullyCompatible([]*avro.Schema{v1, v2, v3}); err == nil {
		t.Error("v1, v2, v3 passed as fully compatible")
	}
}

// EncodeDefault writes what goavro writes for a field left out of a datum.
func TestEncodeDefaultMatchesGoavro(t *testing.T) {
	for _, f := range []string{
		`{"name":"f","type":"string","default":"é"}`,
		`{"name":"f","type":"int","default":-3}`,
		`{"name":"f","type":"long","default":1099511627776}`,
		`{"name":"f","type":"double","default":0.25}`,
		`{"name":"f","type":"float","default":-1.5}`,
		`{"name":"f","type":"boolean","default":false}`,
		`{"name":"f","type":["null","string"],"default":null}`,
		`{"name":"f","type":["string","null"],"default":"s"}`,
		`{"name":"f","type":{"type":"array","items":"string"},"default":[]}`,
		`{"name":"f","type":{"type":"array","items":"long"},"default":[1,2]}`,
		`{"name":"f","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"B"}`,
		`{"name":"f","type":{"type":"long","logicalType":"timestamp-millis"},"default":0}`,
	} {
		schema := record("R", f)
		want, err := goavroCodec(t, schema).BinaryFromNative(nil, map[string]any{})
		if err != nil {
			t.Fatalf("goavro: %s: %v", f, err)
		}
		s := parse(t, schema)
		got, err := avro.EncodeDefault(s.Fields[0].Type, s.Fields[0].Default)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("EncodeDefault(%s) = % x, goavro % x", f, got, want)
		}
	}
}

// A union's default may be of any branch since Avro 1.12 (AVRO-3649);
// goavro still wants the first.
func TestEncodeDefaultUnionAnyBranch(t *testing.T) {
	s := parse(t, `["null","string"]`)
	got, err := avro.EncodeDefault(s, "x")
	if err != nil || !bytes.Equal(got, []byte{2, 2, 'x'}) {
		t.Errorf("EncodeDefault = % x, %v; want 02 02 78", got, err)
	}
}

var fuzzWriter = record("W",
	`{"name":"a","type":"string"}`, `{"name":"n","type":["null","string","long"]}`,
	`{"name":"arr","type":{"type":"array","items":"int"}}`, `{"name":"m","type":{"type":"map","values":"double"}}`,
	`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`, `{"name":"fx","type":{"type":"fixed","name":"F","size":2}}`,
	`{"name":"f","type":"float"}`, `{"name":"b","type":"boolean"}`, `{"name":"dropped","type":"bytes"}`)

var fuzzReader = record("W",
	`{"name":"m","type":{"type":"map","values":"double"}}`, `{"name":"added","type":"string","default":"x"}`,
	`{"name":"a","type":"bytes"}`, `{"name":"n","type":["null","string","double"]}`,
	`{"name":"arr","type":{"type":"array","items":"long"}}`,
	`{"name":"e","type":{"type":"enum","name":"E","symbols":["C","B","A"]}}`, `{"name":"fx","type":{"type":"fixed","name":"F","size":2}}`,
	`{"name":"f","type":"double"}`, `{"name":"b","type":"boolean"}`)

// FuzzResolve: any bytes either fail to resolve or resolve to a datum
// goavro reads with the reader's schema.
func FuzzResolve(f *testing.F) {
	wc := goavroCodec(f, fuzzWriter)
	seed, err := wc.BinaryFromNative(nil, map[string]any{"a": "x", "n": goavro.Union("long", int64(3)), "arr": []any{int32(1)},
		"m": map[string]any{"k": 1.5}, "e": "B", "fx": []byte("ab"), "f": float32(1), "b": true, "dropped": []byte("d")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	r, err := avro.NewResolver(parse(f, fuzzWriter), parse(f, fuzzReader))
	if err != nil {
		f.Fatal(err)
	}
	rc := goavroCodec(f, fuzzReader)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := r.Append(nil, in)
		if err != nil {
			return
		}
		if _, left, err := rc.NativeFromBinary(out); err != nil || len(left) > 0 {
			t.Fatalf("resolved % x to % x, which goavro cannot read: %v", in, out, err)
		}
	})
}
