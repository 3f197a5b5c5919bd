package identityfeed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// checkKeys refuses a body in which an object, at any depth, names a key
// twice or names two keys that differ only in case. encoding/json matches
// struct fields case-insensitively and keeps the last of duplicate names, so
// such a body could be validated as one request (`"app_id":"A","App_Id":"B"`
// decodes as app B) while Heap, or any other reader, takes it as another.
// Refusing the ambiguity, and forwarding only what was validated encoded
// again, keeps the two from ever differing. Syntax errors are left to the
// decoder that follows; checkKeys looks at the first value only.
func checkKeys(body []byte) error {
	type frame struct {
		obj     bool
		keys    map[string]string // folded key -> key as written
		key     string            // the current member's key (objects)
		wantKey bool              // the next token is a key or '}' (objects)
		n       int               // elements seen (arrays)
	}
	var stack []*frame
	// path names where the current token is, for the caller: users[1].properties.
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			switch {
			case f.obj && i == len(stack)-1:
				// the object whose keys are checked
			case f.obj:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			default:
				b.WriteString("[" + strconv.Itoa(f.n) + "]")
			}
		}
		if b.Len() == 0 {
			return "top level"
		}
		return b.String()
	}
	// valueDone moves the enclosing container past the value just read.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.obj {
			f.wantKey = true
		} else {
			f.n++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // a syntax error: the decoder that follows reports it
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack = append(stack, &frame{obj: true, wantKey: true, keys: map[string]string{}})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default: // '}' or ']'
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.obj && top.wantKey {
				folded := foldKey(tok)
				if prev, ok := top.keys[folded]; ok {
					if prev == tok {
						return fmt.Errorf("%s: key %q appears twice", path(), tok)
					}
					return fmt.Errorf("%s: keys %q and %q differ only in case; send one", path(), prev, tok)
				}
				top.keys[folded] = tok
				top.key, top.wantKey = tok, false
				continue
			}
		}
		valueDone()
		if len(stack) == 0 {
			return nil // the first value is complete; the decoder refuses a second
		}
	}
}

// foldKey maps every key that strings.EqualFold (and so encoding/json's field
// matching) takes as equal to one string: each rune becomes the smallest of
// its case-folding orbit (k, K and the Kelvin sign all become K).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		return low
	}, s)
}
