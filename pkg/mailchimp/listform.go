package mailchimp

import (
	"bytes"
	"os"
	"strings"
)

// listForm is what ParseListWebhook reads of a form body: the first type and
// fired_at, and the first value of each data[...] field (url.Values.Get and
// vs[0] of url.ParseQuery's map), without building that map of slices.
type listForm struct {
	typ, fired        string
	hasType, hasFired bool
	data              map[string]string
}

// maxFastParams keeps the fast path well inside net/url's limit on the
// number of parameters (10,000; GODEBUG urlmaxqueryparams can change it).
const maxFastParams = 256

// scanListForm reads body as url.ParseQuery does. ok is false when the body
// is not plainly well formed (a semicolon, an escape that does not decode,
// many parameters, or a GODEBUG setting of the parameter limit): the caller
// then parses it with url.ParseQuery, which reports the error as before.
func scanListForm(body []byte) (f listForm, ok bool) {
	n := bytes.Count(body, []byte{'&'}) + 1
	if n > maxFastParams || bytes.IndexByte(body, ';') >= 0 || strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams") {
		return listForm{}, false
	}
	// Every key and value is unescaped into one buffer, made one string:
	// one allocation for the lot rather than one a field.
	buf := make([]byte, 0, len(body))
	type field struct{ k, v, end int }
	var stack [16]field
	fields := stack[:0]
	for q := body; len(q) > 0; {
		pair := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if len(pair) == 0 {
			continue
		}
		k, v := pair, pair[len(pair):]
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			k, v = pair[:i], pair[i+1:]
		}
		at := field{k: len(buf)}
		if buf, ok = unescapeQuery(buf, k); !ok {
			return listForm{}, false
		}
		at.v = len(buf)
		if buf, ok = unescapeQuery(buf, v); !ok {
			return listForm{}, false
		}
		at.end = len(buf)
		fields = append(fields, at)
	}
	all := string(buf)
	f.data = make(map[string]string, len(fields))
	for _, at := range fields {
		k, v := all[at.k:at.v], all[at.v:at.end]
		switch k {
		case "type":
			if !f.hasType {
				f.typ, f.hasType = v, true
			}
		case "fired_at":
			if !f.hasFired {
				f.fired, f.hasFired = v, true
			}
		default:
			if inner, ok := strings.CutPrefix(k, "data["); ok && strings.HasSuffix(inner, "]") {
				inner = strings.TrimSuffix(inner, "]")
				if _, dup := f.data[inner]; !dup {
					f.data[inner] = v
				}
			}
		}
	}
	return f, true
}

// unescapeQuery appends s unescaped as url.QueryUnescape does ('+' is a
// space, %XX a byte, read through hexVal as UnescapeMandrillForm reads it);
// ok is false where url.QueryUnescape fails.
func unescapeQuery(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || hexVal[s[i+1]]|hexVal[s[i+2]] > 0x0f {
				return dst, false
			}
			dst = append(dst, hexVal[s[i+1]]<<4|hexVal[s[i+2]])
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}
