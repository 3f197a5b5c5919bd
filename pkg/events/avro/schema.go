// Package avro is what the Avro specification defines and goavro does not
// provide: a schema's Parsing Canonical Form and its CRC-64-AVRO fingerprint
// (the single-object header), schema resolution (reading data written with
// one schema as another) and the compatibility rules built on it.
//
// goavro (github.com/linkedin/goavro/v2) stays the reference: package
// events takes only schemas goavro parses and checks its hand-written
// encoding against goavro's, and the tests here check this package's
// canonical forms against goavro's (where goavro follows the spec) and its
// resolved bytes by decoding them with goavro. This package parses schemas
// again because resolution and the canonical form need what goavro's Codec
// does not expose (fields, defaults, names, aliases); goavro does no
// resolution between a writer's and a reader's schema.
package avro

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kinds of schema: the spec's primitive and complex type names.
const (
	Null    = "null"
	Boolean = "boolean"
	Int     = "int"
	Long    = "long"
	Float   = "float"
	Double  = "double"
	Bytes   = "bytes"
	String  = "string"
	Record  = "record"
	Enum    = "enum"
	Array   = "array"
	Map     = "map"
	Union   = "union"
	Fixed   = "fixed"
)

var primitives = map[string]bool{Null: true, Boolean: true, Int: true, Long: true, Float: true, Double: true, Bytes: true, String: true}

// Schema is a parsed Avro schema. Named types (record, enum, fixed) are
// shared: every reference to one is the same *Schema, so a recursive type
// is a cycle.
type Schema struct {
	Type string // one of the kinds above

	Name    string   // record, enum, fixed: the fullname
	Aliases []string // fullnames

	Fields  []*Field  // record
	Symbols []string  // enum
	Default *string   // enum: the symbol read in place of one the reader lacks
	Items   *Schema   // array
	Values  *Schema   // map
	Types   []*Schema // union branches
	Size    int       // fixed

	// LogicalType is kept for callers; resolution and the canonical form
	// use the underlying type, as the spec says.
	LogicalType string
}

// Field is one field of a record.
type Field struct {
	Name       string
	Aliases    []string
	Type       *Schema
	HasDefault bool
	Default    any // JSON, numbers as json.Number
}

// Parse reads a schema in its JSON form. It checks names, not field
// defaults (Apache Avro's Schema.parse neither): ValidateDefaults does, and
// resolution checks each default it needs.
func Parse(text string) (*Schema, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("avro: schema is not JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("avro: schema: text after the JSON value")
	}
	p := &parser{names: map[string]*Schema{}}
	s, err := p.parse(v, "")
	if err != nil {
		return nil, fmt.Errorf("avro: schema: %w", err)
	}
	return s, nil
}

// ValidateDefaults checks every field default in s against its field's
// type, as Apache Avro's Schema.Parser does by default.
func ValidateDefaults(s *Schema) error {
	return validateDefaults(s, map[*Schema]bool{})
}

func validateDefaults(s *Schema, seen map[*Schema]bool) error {
	if seen[s] {
		return nil
	}
	seen[s] = true
	var next []*Schema
	switch s.Type {
	case Record:
		for _, f := range s.Fields {
			if f.HasDefault {
				if _, err := EncodeDefault(f.Type, f.Default); err != nil {
					return fmt.Errorf("avro: %s.%s: invalid default: %w", s.Name, f.Name, err)
				}
			}
			next = append(next, f.Type)
		}
	case Array:
		next = append(next, s.Items)
	case Map:
		next = append(next, s.Values)
	case Union:
		next = s.Types
	}
	for _, t := range next {
		if err := validateDefaults(t, seen); err != nil {
			return err
		}
	}
	return nil
}

type parser struct {
	names map[string]*Schema
}

func (p *parser) parse(v any, space string) (*Schema, error) {
	switch t := v.(type) {
	case string:
		return p.reference(t, space)
	case []any:
		return p.union(t, space)
	case map[string]any:
		return p.object(t, space)
	}
	return nil, fmt.Errorf("%v is not a schema", v)
}

// reference is a type given by name: a primitive, or a named type defined
// before, by its fullname or by its name in the enclosing namespace.
func (p *parser) reference(name, space string) (*Schema, error) {
	if primitives[name] {
		return &Schema{Type: name}, nil
	}
	if !strings.Contains(name, ".") && space != "" {
		if s, ok := p.names[space+"."+name]; ok {
			return s, nil
		}
	}
	if s, ok := p.names[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown type %q", name)
}

func (p *parser) union(branches []any, space string) (*Schema, error) {
	u := &Schema{Type: Union}
	seen := map[string]bool{}
	for _, b := range branches {
		s, err := p.parse(b, space)
		if err != nil {
			return nil, err
		}
		if s.Type == Union {
			return nil, errors.New("a union may not immediately contain a union")
		}
		key := s.Type
		if s.Name != "" {
			key = s.Name
		}
		if seen[key] {
			return nil, fmt.Errorf("union holds %s twice", key)
		}
		seen[key] = true
		u.Types = append(u.Types, s)
	}
	return u, nil
}

func (p *parser) object(m map[string]any, space string) (*Schema, error) {
	typ, ok := m["type"]
	if !ok {
		return nil, errors.New(`an object schema needs "type"`)
	}
	name, isString := typ.(string)
	if !isString {
		// {"type": {...}} or {"type": [...]}: the schema is the value.
		return p.parse(typ, space)
	}
	logical, _ := m["logicalType"].(string)
	switch name {
	case Record, "error", Enum, Fixed:
		return p.named(m, name, space, logical)
	case Array:
		items, ok := m["items"]
		if !ok {
			return nil, errors.New(`an array needs "items"`)
		}
		s, err := p.parse(items, space)
		if err != nil {
			return nil, err
		}
		return &Schema{Type: Array, Items: s, LogicalType: logical}, nil
	case Map:
		values, ok := m["values"]
		if !ok {
			return nil, errors.New(`a map needs "values"`)
		}
		s, err := p.parse(values, space)
		if err != nil {
			return nil, err
		}
		return &Schema{Type: Map, Values: s, LogicalType: logical}, nil
	}
	if primitives[name] {
		return &Schema{Type: name, LogicalType: logical}, nil
	}
	// {"type": "SomeRecord"}: a reference in object form.
	return p.reference(name, space)
}

// named parses a record, enum or fixed and registers it under its fullname
// before its fields, so that they may refer to it.
func (p *parser) named(m map[string]any, typ, space, logical string) (*Schema, error) {
	full, ns, err := fullname(m, space)
	if err != nil {
		return nil, err
	}
	if _, dup := p.names[full]; dup {
		return nil, fmt.Errorf("%s is defined twice", full)
	}
	if typ == "error" {
		typ = Record
	}
	s := &Schema{Type: typ, Name: full, LogicalType: logical}
	if s.Aliases, err = aliases(m["aliases"], ns); err != nil {
		return nil, fmt.Errorf("%s: %w", full, err)
	}
	p.names[full] = s
	switch typ {
	case Record:
		fields, ok := m["fields"].([]any)
		if !ok {
			return nil, fmt.Errorf(`record %s needs "fields"`, full)
		}
		seen := map[string]bool{}
		for _, fv := range fields {
			fm, ok := fv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %s: a field is not an object", full)
			}
			f := &Field{}
			if f.Name, ok = fm["name"].(string); !ok || !validName(f.Name) {
				return nil, fmt.Errorf("record %s: field name %v is not a valid name", full, fm["name"])
			}
			if seen[f.Name] {
				return nil, fmt.Errorf("record %s: field %s twice", full, f.Name)
			}
			seen[f.Name] = true
			ft, ok := fm["type"]
			if !ok {
				return nil, fmt.Errorf("record %s: field %s has no type", full, f.Name)
			}
			if f.Type, err = p.parse(ft, ns); err != nil {
				return nil, fmt.Errorf("record %s: field %s: %w", full, f.Name, err)
			}
			if a, ok := fm["aliases"].([]any); ok {
				for _, x := range a {
					if n, ok := x.(string); ok {
						f.Aliases = append(f.Aliases, n)
					}
				}
			}
			f.Default, f.HasDefault = fm["default"]
			s.Fields = append(s.Fields, f)
		}
	case Enum:
		syms, ok := m["symbols"].([]any)
		if !ok {
			return nil, fmt.Errorf(`enum %s needs "symbols"`, full)
		}
		seen := map[string]bool{}
		for _, x := range syms {
			sym, ok := x.(string)
			if !ok || !validName(sym) || seen[sym] {
				return nil, fmt.Errorf("enum %s: symbol %v is invalid or repeated", full, x)
			}
			seen[sym] = true
			s.Symbols = append(s.Symbols, sym)
		}
		if d, ok := m["default"]; ok {
			sym, ok := d.(string)
			if !ok || !seen[sym] {
				return nil, fmt.Errorf("enum %s: default %v is not one of its symbols", full, d)
			}
			s.Default = &sym
		}
	case Fixed:
		n, err := size(m["size"])
		if err != nil {
			return nil, fmt.Errorf("fixed %s: %w", full, err)
		}
		s.Size = n
	}
	return s, nil
}

// fullname is a named type's fullname and the namespace its nested
// definitions and references use (the spec's "Names").
func fullname(m map[string]any, space string) (full, ns string, err error) {
	name, ok := m["name"].(string)
	if !ok || name == "" {
		return "", "", errors.New(`a named type needs "name"`)
	}
	switch {
	case strings.Contains(name, "."):
		full = name
	default:
		if nsv, ok := m["namespace"]; ok {
			s, ok := nsv.(string)
			if !ok {
				return "", "", fmt.Errorf("%s: namespace is not a string", name)
			}
			space = s
		}
		full = name
		if space != "" {
			full = space + "." + name
		}
	}
	for _, part := range strings.Split(full, ".") {
		if !validName(part) {
			return "", "", fmt.Errorf("%q is not a valid fullname", full)
		}
	}
	if primitives[full] {
		return "", "", fmt.Errorf("%s may not name a type", full)
	}
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		ns = full[:i]
	}
	return full, ns, nil
}

func aliases(v any, ns string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("aliases is not a list")
	}
	var out []string
	for _, x := range list {
		a, ok := x.(string)
		if !ok {
			return nil, errors.New("an alias is not a string")
		}
		if !strings.Contains(a, ".") && ns != "" {
			a = ns + "." + a
		}
		out = append(out, a)
	}
	return out, nil
}

func size(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New(`"size" is not a number`)
	}
	i, err := strconv.Atoi(n.String())
	if err != nil || i < 0 {
		return 0, fmt.Errorf("size %s is not a non-negative integer", n)
	}
	return i, nil
}

// validName: [A-Za-z_][A-Za-z0-9_]*, the spec's names and symbols.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Compact returns schema text without insignificant whitespace: what the
// codec registers, so that a lookup of the same file finds it.
func Compact(text string) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(text)); err != nil {
		return "", fmt.Errorf("avro: schema is not JSON: %w", err)
	}
	return b.String(), nil
}
