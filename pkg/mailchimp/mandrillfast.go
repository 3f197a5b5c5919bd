package mailchimp

import "strings"

// The mapper parses one Mandrill event per record, and encoding/json
// dominates its CPU (BENCHMARKS.md). fastMandrillEvent reads the shape Mandrill sends in one
// pass, without reflection. It answers only when it is sure to agree with
// json.Unmarshal into MandrillEvent: on anything else (an escape or a
// non-ASCII byte in a field it keeps, null, a duplicate or differently cased
// field name, a number that is not a plain integer, invalid JSON) it
// declines and the caller falls back to encoding/json.

// fastParser reads one JSON text; ok turns false at the first thing it
// declines.
type fastParser struct {
	b  []byte
	s  string // b as one string: the fields it returns share it, one allocation
	i  int
	ok bool
}

var (
	mandrillEventFields = []string{"event", "type", "ts", "_id", "ip", "url", "msg"}
	mandrillMsgFields   = []string{"_id", "ts", "email", "subject", "sender", "tags", "state"}
)

func fastMandrillEvent(raw []byte) (MandrillEvent, bool) {
	p := fastParser{b: raw, s: string(raw), ok: true}
	var e MandrillEvent
	p.fields(mandrillEventFields, func(key string) (i int) {
		switch key {
		case "event":
			i, e.Event = 0, p.str()
		case "type":
			i, e.Type = 1, p.str()
		case "ts":
			i, e.TS = 2, p.int()
		case "_id":
			i, e.ID = 3, p.str()
		case "ip":
			i, e.IP = 4, p.str()
		case "url":
			i, e.URL = 5, p.str()
		case "msg":
			i, e.Msg = 6, p.msg()
		default:
			i = -1
		}
		return i
	})
	p.ws()
	if !p.ok || p.i != len(p.b) {
		return MandrillEvent{}, false
	}
	return e, true
}

func (p *fastParser) msg() MandrillMsg {
	var m MandrillMsg
	p.fields(mandrillMsgFields, func(key string) (i int) {
		switch key {
		case "_id":
			i, m.ID = 0, p.str()
		case "ts":
			i, m.TS = 1, p.int()
		case "email":
			i, m.Email = 2, p.str()
		case "subject":
			i, m.Subject = 3, p.str()
		case "sender":
			i, m.Sender = 4, p.str()
		case "tags":
			i, m.Tags = 5, p.strs()
		case "state":
			i, m.State = 6, p.str()
		default:
			i = -1
		}
		return i
	})
	return m
}

// fields reads an object whose struct fields are names (at most 16). read
// reads the value of a key it knows and returns its index in names, else
// -1: the value is skipped. It declines a duplicate (encoding/json merges
// it) and a key equal to a field's name but for case (encoding/json would
// fill that field).
func (p *fastParser) fields(names []string, read func(key string) int) {
	var seen uint16
	p.object(func(key string) bool {
		i := read(key)
		if i < 0 {
			for _, f := range names {
				if strings.EqualFold(key, f) {
					return false
				}
			}
			p.skip(0)
			return p.ok
		}
		if seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		return p.ok
	})
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object reads an object whose keys are plain ASCII, calling field with the
// parser at each value.
func (p *fastParser) object(field func(key string) bool) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		p.ok = false
		return
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return
	}
	for p.ok {
		p.ws()
		key := p.str()
		p.ws()
		if !p.ok || p.i >= len(p.b) || p.b[p.i] != ':' {
			p.ok = false
			return
		}
		p.i++
		if !field(key) {
			p.ok = false
			return
		}
		p.ws()
		if p.i >= len(p.b) {
			p.ok = false
			return
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return
		default:
			p.ok = false
		}
	}
}

// str reads a string of printable ASCII without escapes: exactly the bytes
// encoding/json would return.
func (p *fastParser) str() string {
	p.ws()
	if !p.ok || p.i >= len(p.b) || p.b[p.i] != '"' {
		p.ok = false
		return ""
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			p.i = j + 1
			return p.s[start:j]
		}
		if c < 0x20 || c >= 0x80 || c == '\\' {
			break
		}
	}
	p.ok = false
	return ""
}

// int reads an integer without fraction or exponent that fits an int64
// comfortably (at most 18 digits).
func (p *fastParser) int() int64 {
	p.ws()
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
	}
	start := p.i
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 18 || (digits > 1 && p.b[start] == '0') {
		p.ok = false
		return 0
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			p.ok = false
			return 0
		}
	}
	if neg {
		return -n
	}
	return n
}

// strs reads an array of plain strings; [] is an empty, non-nil slice, as
// encoding/json makes it.
func (p *fastParser) strs() []string {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '[' {
		p.ok = false
		return nil
	}
	p.i++
	out := []string{}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return out
	}
	for p.ok {
		out = append(out, p.str())
		p.ws()
		if !p.ok || p.i >= len(p.b) {
			p.ok = false
			return nil
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return out
		default:
			p.ok = false
		}
	}
	return nil
}

// maxSkipDepth bounds the nesting of skipped values; deeper declines.
const maxSkipDepth = 64

// skip validates and passes over any JSON value, as encoding/json's scanner
// would accept it.
func (p *fastParser) skip(depth int) {
	p.ws()
	if p.i >= len(p.b) || depth > maxSkipDepth {
		p.ok = false
		return
	}
	switch c := p.b[p.i]; {
	case c == '"':
		p.skipStr()
	case c == '{':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return
		}
		for p.ok {
			p.ws()
			p.skipStr()
			p.ws()
			if !p.ok || p.i >= len(p.b) || p.b[p.i] != ':' {
				p.ok = false
				return
			}
			p.i++
			p.skip(depth + 1)
			p.ws()
			if !p.ok || p.i >= len(p.b) {
				p.ok = false
				return
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case '}':
				p.i++
				return
			default:
				p.ok = false
			}
		}
	case c == '[':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return
		}
		for p.ok {
			p.skip(depth + 1)
			p.ws()
			if !p.ok || p.i >= len(p.b) {
				p.ok = false
				return
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return
			default:
				p.ok = false
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		p.skipNumber()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return
			}
		}
		p.ok = false
	}
}

// skipStr passes over a string: any byte from 0x20 up but the quote and
// backslash (encoding/json's scanner checks no UTF-8), and valid escapes.
func (p *fastParser) skipStr() {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		p.ok = false
		return
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			return
		case c < 0x20:
			p.ok = false
			return
		case c == '\\':
			if j+1 >= len(p.b) {
				p.ok = false
				return
			}
			switch p.b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(p.b) {
					p.ok = false
					return
				}
				for _, h := range p.b[j+2 : j+6] {
					if !isHex(h) {
						p.ok = false
						return
					}
				}
				j += 5
			default:
				p.ok = false
				return
			}
		}
	}
	p.ok = false
}

// skipNumber passes over a number of JSON's grammar.
func (p *fastParser) skipNumber() {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		p.ok = false
		return
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			p.ok = false
			return
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.ok = false
		}
	}
}
