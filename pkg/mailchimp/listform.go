package mailchimp

import (
	"net/url"
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
	q := string(body)
	n := strings.Count(q, "&") + 1
	if n > maxFastParams || strings.IndexByte(q, ';') >= 0 || strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams") {
		return listForm{}, false
	}
	f.data = make(map[string]string, n)
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return listForm{}, false
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return listForm{}, false
		}
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
