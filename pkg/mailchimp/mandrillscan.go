package mailchimp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/url"
	"unicode/utf8"
)

// The single-pass Mandrill path ingress takes for a body that is what
// Mandrill sends: one mandrill_events field. It agrees with url.ParseQuery,
// MandrillSignature and SplitMandrillBatch (FuzzMandrill checks it) while
// reading the body once to unescape it, once to sign it and once to split it
// and read the ids, without copying an event.

// UnescapeMandrillForm returns the value of a form body whose only field is
// mandrill_events, query-unescaped in place: body's bytes are overwritten
// (with ok false and no error they are untouched). ok is false when the
// body has another shape (more fields, a ';', another spelling of the name):
// parse such a body with url.ParseQuery. err is url.QueryUnescape's error
// for a bad escape, as url.ParseQuery would report it.
func UnescapeMandrillForm(body []byte) (events []byte, ok bool, err error) {
	const prefix = MandrillEventsField + "="
	if len(body) < len(prefix) || string(body[:len(prefix)]) != prefix {
		return nil, false, nil
	}
	s := body[len(prefix):]
	if bytes.IndexByte(s, '&') >= 0 || bytes.IndexByte(s, ';') >= 0 {
		return nil, false, nil
	}
	w := 0
	for r := 0; r < len(s); w++ {
		c := s[r]
		r++
		switch c {
		case '%':
			if r+1 >= len(s) || hexVal[s[r]]|hexVal[s[r+1]] > 0x0f {
				bad := s[r-1 : min(r+2, len(s))]
				return nil, true, url.EscapeError(string(bad))
			}
			c = hexVal[s[r]]<<4 | hexVal[s[r+1]]
			r += 2
		case '+':
			c = ' '
		}
		s[w] = c
	}
	return s[:w], true, nil
}

// hexVal is a hex digit's value, 0xff for another byte.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := range byte(10) {
		t['0'+i] = i
	}
	for i := range byte(6) {
		t['a'+i], t['A'+i] = 10+i, 10+i
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// VerifyMandrillEvents is VerifyMandrillSignature of a form whose only field
// is mandrill_events = events.
func VerifyMandrillEvents(registeredURL, key string, events []byte, sig string) bool {
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || sig == "" {
		return false
	}
	mac := hmac.New(sha1.New, []byte(key))
	mac.Write([]byte(registeredURL))
	mac.Write([]byte(MandrillEventsField))
	mac.Write(events)
	return hmac.Equal(got, mac.Sum(nil))
}

// MandrillUnit is one event of a batch.
type MandrillUnit struct {
	// Raw is the event object byte-for-byte, as SplitMandrillBatch returns it.
	Raw []byte
	// MessageID is MandrillEvent.MessageID of the event's two ids as
	// encoding/json decodes them (msg._id, else _id); empty when neither is
	// set or when they do not decode (an _id that is not a string, a msg that
	// is not an object). It may share Raw's bytes.
	MessageID []byte
}

// ScanMandrillBatch appends to units each event of a mandrill_events array
// with its message id, in one pass. It accepts and refuses what
// SplitMandrillBatch does, with the same units.
func ScanMandrillBatch(events []byte, units []MandrillUnit) ([]MandrillUnit, error) {
	s := batchScanner{b: events}
	i := s.ws(0)
	if i == len(events) || events[i] != '[' {
		if i < len(events) && s.literal(i, "null") == len(events) {
			return nil, malformed("mandrill_events: not an array")
		}
		return nil, s.errAt(i, "want an array")
	}
	i = s.ws(i + 1)
	if i < len(events) && events[i] == ']' {
		i++
	} else {
		for {
			if i == len(events) || events[i] != '{' {
				return nil, s.errAt(i, fmt.Sprintf("mandrill_events[%d]: want an object", len(units)))
			}
			u, end := s.event(i)
			if s.err != nil {
				return nil, s.err
			}
			units = append(units, u)
			i = s.ws(end)
			if i == len(events) {
				return nil, s.errAt(i, "unterminated array")
			}
			if events[i] == ']' {
				i++
				break
			}
			if events[i] != ',' {
				return nil, s.errAt(i, "want ',' or ']' after an array element")
			}
			i = s.ws(i + 1)
		}
	}
	if i = s.ws(i); i != len(events) {
		return nil, s.errAt(i, "trailing data after the array")
	}
	return units, nil
}

// maxDepth is encoding/json's nesting limit; the batch array is level 1.
const maxDepth = 10000

type batchScanner struct {
	b   []byte
	err error
}

func (s *batchScanner) errAt(i int, what string) error {
	if s.err != nil {
		return s.err
	}
	if i >= len(s.b) {
		s.err = malformed("mandrill_events: unexpected end of JSON input (%s)", what)
	} else {
		s.err = malformed("mandrill_events: invalid character %q at offset %d (%s)", s.b[i], i, what)
	}
	return s.err
}

func (s *batchScanner) ws(i int) int {
	for i < len(s.b) {
		switch s.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// literal returns the index after lit at i, or -1.
func (s *batchScanner) literal(i int, lit string) int {
	if len(s.b)-i >= len(lit) && string(s.b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// str scans the string whose opening quote is at i and returns the index
// after its closing quote, and whether it holds an escape or a byte that is
// not ASCII.
func (s *batchScanner) str(i int) (end int, plain bool) {
	b := s.b
	plain = true
	for i++; ; i++ {
		// Eight bytes at a time up to one that needs a look (the lowest
		// flagged byte is exact: a false flag only follows a true one).
		for i+8 <= len(b) {
			if m := needsLook(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, plain
		case c == '\\':
			plain = false
			i++
			if i == len(b) {
				s.errAt(i, "in string literal")
				return -1, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					s.errAt(min(i+1, len(b)), "in \\u escape")
					return -1, false
				}
				i += 4
			default:
				s.errAt(i, "in string escape")
				return -1, false
			}
		case c < 0x20:
			s.errAt(i, "in string literal")
			return -1, false
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	s.errAt(len(b), "in string literal")
	return -1, false
}

// needsLook is non-zero when one of the eight bytes in x is a quote, a
// backslash, a control character or not ASCII.
func needsLook(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs := x^(ones*'"'), x^(ones*'\\')
	return ((q-ones)&^q | (bs-ones)&^bs | (x-ones*0x20)&^x | x) & highs
}

// number scans the number at i and returns the index after it.
func (s *batchScanner) number(i int) int {
	b := s.b
	digits := func(i int) int {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == start {
			s.errAt(i, "in numeric literal")
			return -1
		}
		return i
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if i = digits(i); i < 0 {
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// value scans any JSON value at i (not whitespace) nested at depth (the
// level of its container) and returns the index after it, or -1.
func (s *batchScanner) value(i, depth int) int {
	b := s.b
	var stackBuf [32]byte
	stack := stackBuf[:0] // '{' or '[' per open container
	for {
		// A value starts at i.
		if i >= len(b) {
			s.errAt(i, "looking for beginning of value")
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			if i, _ = s.str(i); i < 0 {
				return -1
			}
		case c == '-' || '0' <= c && c <= '9':
			if i = s.number(i); i < 0 {
				return -1
			}
		case c == 't' || c == 'f' || c == 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if i = s.literal(i, lit); i < 0 {
				s.errAt(len(b), "in literal "+lit)
				return -1
			}
		case c == '{' || c == '[':
			if depth+len(stack)+1 > maxDepth {
				s.errAt(i, "exceeded max depth")
				return -1
			}
			stack = append(stack, c)
			i = s.ws(i + 1)
			if i < len(b) && b[i] == c+2 { // '{'+2 == '}', '['+2 == ']'
				i++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if i = s.key(i); i < 0 {
					return -1
				}
			}
			continue
		default:
			s.errAt(i, "looking for beginning of value")
			return -1
		}
		// After a value: close containers or go on to the next element.
		for {
			if len(stack) == 0 {
				return i
			}
			i = s.ws(i)
			if i >= len(b) {
				s.errAt(i, "in a container")
				return -1
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				s.errAt(i, "after a container element")
				return -1
			}
			i = s.ws(i + 1)
			if top == '{' {
				if i = s.key(i); i < 0 {
					return -1
				}
			}
			break
		}
	}
}

// key scans an object key and its colon at i and returns the index of the
// value after them.
func (s *batchScanner) key(i int) int {
	if i >= len(s.b) || s.b[i] != '"' {
		s.errAt(i, "looking for beginning of object key string")
		return -1
	}
	if i, _ = s.str(i); i < 0 {
		return -1
	}
	return s.colon(i)
}

func (s *batchScanner) colon(i int) int {
	if i = s.ws(i); i >= len(s.b) || s.b[i] != ':' {
		s.errAt(i, "after object key")
		return -1
	}
	return s.ws(i + 1)
}

// idField is what an object member's key is to the id decoding.
type idField int

const (
	otherField  idField = iota
	idKey               // "_id"
	msgKey              // "msg"
	unsureField         // may match "_id" or "msg" the way encoding/json matches names (case folding, escapes)
)

func classify(key []byte, plain bool) idField {
	switch {
	case !plain:
		return unsureField
	case string(key) == "_id":
		return idKey
	case string(key) == "msg":
		return msgKey
	case len(key) == 3 && (asciiEqualFold(key, "_id") || asciiEqualFold(key, "msg")):
		return unsureField
	}
	return otherField
}

func asciiEqualFold(b []byte, s string) bool {
	for i := range b {
		if b[i]|0x20 != s[i]|0x20 {
			return false
		}
	}
	return true
}

// ids is what decoding {_id, msg: {_id}} found so far.
type ids struct {
	id, msgID []byte
	bad       bool // a type mismatch: json.Unmarshal fails
	unsure    bool // decode the unit with encoding/json instead
}

// event scans the event object at i (depth 2) and returns it with its ids.
func (s *batchScanner) event(i int) (MandrillUnit, int) {
	var got ids
	end := s.object(i, 2, func(f idField, v int) int {
		switch f {
		case idKey:
			return s.idValue(v, 2, &got.id, &got)
		case msgKey:
			switch {
			case s.b[v] == '{':
				return s.object(v, 3, func(f idField, v int) int {
					switch f {
					case idKey:
						return s.idValue(v, 3, &got.msgID, &got)
					case msgKey, otherField:
						return s.value(v, 3)
					}
					got.unsure = true
					return s.value(v, 3)
				})
			case s.literal(v, "null") >= 0:
				return s.value(v, 2)
			}
			got.bad = true
			return s.value(v, 2)
		case unsureField:
			got.unsure = true
		}
		return s.value(v, 2)
	})
	if end < 0 {
		return MandrillUnit{}, -1
	}
	u := MandrillUnit{Raw: s.b[i:end:end]}
	switch {
	case got.unsure:
		u.MessageID = decodeMessageID(u.Raw)
	case got.bad:
	case len(got.msgID) > 0:
		u.MessageID = got.msgID
	default:
		u.MessageID = got.id
	}
	return u, end
}

// object scans the object at i whose members are at depth, handing each
// member's key and value index to member, which returns the index after the
// value.
func (s *batchScanner) object(i, depth int, member func(f idField, v int) int) int {
	if depth > maxDepth {
		s.errAt(i, "exceeded max depth")
		return -1
	}
	b := s.b
	i = s.ws(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			s.errAt(i, "looking for beginning of object key string")
			return -1
		}
		end, plain := s.str(i)
		if end < 0 {
			return -1
		}
		f := classify(b[i+1:end-1], plain)
		v := s.colon(end)
		if v < 0 {
			return -1
		}
		if v >= len(b) {
			s.errAt(v, "looking for beginning of value")
			return -1
		}
		if i = member(f, v); i < 0 {
			return -1
		}
		if i = s.ws(i); i >= len(b) {
			s.errAt(i, "in an object")
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = s.ws(i + 1)
		default:
			s.errAt(i, "after object key:value pair")
			return -1
		}
	}
}

// idValue scans an _id's value at v into dst as encoding/json decodes it
// into a string: null leaves dst as it is, another type is a mismatch.
func (s *batchScanner) idValue(v, depth int, dst *[]byte, got *ids) int {
	b := s.b
	switch {
	case b[v] == '"':
		end, plain := s.str(v)
		if end < 0 {
			return -1
		}
		if plain {
			*dst = b[v+1 : end-1 : end-1]
		} else {
			var str string
			json.Unmarshal(b[v:end], &str)
			*dst = []byte(str)
		}
		return end
	case s.literal(v, "null") >= 0:
	default:
		got.bad = true
	}
	return s.value(v, depth)
}

// decodeMessageID is the id decoding by encoding/json, for an event whose
// member names are not plain.
func decodeMessageID(raw []byte) []byte {
	var ids struct {
		ID  string `json:"_id"`
		Msg struct {
			ID string `json:"_id"`
		} `json:"msg"`
	}
	if json.Unmarshal(raw, &ids) != nil {
		return nil
	}
	if ids.Msg.ID != "" {
		return []byte(ids.Msg.ID)
	}
	return []byte(ids.ID)
}
