package avro

import (
	"strconv"
	"strings"
)

// Canonical returns s's Parsing Canonical Form, as the Avro specification
// defines it ("Parsing Canonical Form for Schemas", "Transforming into
// Parsing Canonical Form"), and as Apache Avro's Java
// SchemaNormalization.toParsingForm writes it:
//
//   - PRIMITIVES: a primitive is its name ("long", not {"type":"long"});
//   - FULLNAMES: named types by fullname, no "namespace";
//   - STRIP: only type, name, fields, symbols, items, values and size are
//     kept; doc, aliases, default, order and logicalType go, so that
//     {"type":"long","logicalType":"timestamp-millis"} becomes "long";
//   - ORDER: name, type, fields, symbols, items, values, size;
//   - STRINGS: no escapes (names and symbols are [A-Za-z0-9_.] only);
//   - INTEGERS: sizes as plain integers;
//   - WHITESPACE: none outside strings.
//
// A named type is written out where it first appears and by its fullname
// after.
//
// goavro's Codec.CanonicalSchema differs: it keeps {"type":"long"} for a
// long with a logicalType (goavro issue #174), so its Rabin fingerprint is
// not the spec's and not what Java, Python or a registry compute. This
// project's single-object header uses Canonical, hence this package.
func Canonical(s *Schema) string {
	var b strings.Builder
	canonical(&b, s, map[string]bool{})
	return b.String()
}

func canonical(b *strings.Builder, s *Schema, seen map[string]bool) {
	switch s.Type {
	case Union:
		b.WriteByte('[')
		for i, t := range s.Types {
			if i > 0 {
				b.WriteByte(',')
			}
			canonical(b, t, seen)
		}
		b.WriteByte(']')
	case Array:
		b.WriteString(`{"type":"array","items":`)
		canonical(b, s.Items, seen)
		b.WriteByte('}')
	case Map:
		b.WriteString(`{"type":"map","values":`)
		canonical(b, s.Values, seen)
		b.WriteByte('}')
	case Record, Enum, Fixed:
		if seen[s.Name] {
			b.WriteString(`"` + s.Name + `"`)
			return
		}
		seen[s.Name] = true
		b.WriteString(`{"name":"` + s.Name + `","type":"` + s.Type + `"`)
		switch s.Type {
		case Record:
			b.WriteString(`,"fields":[`)
			for i, f := range s.Fields {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`{"name":"` + f.Name + `","type":`)
				canonical(b, f.Type, seen)
				b.WriteByte('}')
			}
			b.WriteByte(']')
		case Enum:
			b.WriteString(`,"symbols":[`)
			for i, sym := range s.Symbols {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`"` + sym + `"`)
			}
			b.WriteByte(']')
		case Fixed:
			b.WriteString(`,"size":` + strconv.Itoa(s.Size))
		}
		b.WriteByte('}')
	default: // a primitive, its logical type stripped
		b.WriteString(`"` + s.Type + `"`)
	}
}

// empty is the CRC-64-AVRO of no bytes, and its polynomial ("Schema
// Fingerprints" in the spec).
const empty uint64 = 0xc15d213aa4d7a795

var crcTable = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// CRC64 is the spec's 64-bit Rabin fingerprint (CRC-64-AVRO) of b.
func CRC64(b []byte) uint64 {
	fp := empty
	for _, c := range b {
		fp = (fp >> 8) ^ crcTable[byte(fp)^c]
	}
	return fp
}

// Fingerprint is the CRC-64-AVRO of s's Parsing Canonical Form: Java's
// SchemaNormalization.parsingFingerprint64, and what the single-object
// encoding's header carries (little-endian).
func Fingerprint(s *Schema) uint64 { return CRC64([]byte(Canonical(s))) }
