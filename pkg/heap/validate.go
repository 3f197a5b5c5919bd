package heap

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// CheckProperties returns why Heap refuses props, a "properties" object
// decoded with json.Decoder.UseNumber, or nil: keys of 1 to MaxValueLen
// characters, each value a string of at most MaxValueLen characters or a
// number of at most MaxValueLen digits. Both the identity feed, before it
// records or forwards a call, and the stand-in (heaptest) apply it. The
// error may quote a key, never a value.
func CheckProperties(props map[string]any) error {
	for k, v := range props {
		if k == "" || utf8.RuneCountInString(k) > MaxValueLen {
			return fmt.Errorf("property key must be 1 to %d characters", MaxValueLen)
		}
		switch v := v.(type) {
		case string:
			if n := utf8.RuneCountInString(v); n > MaxValueLen {
				return fmt.Errorf("property %q value of %d characters, limit %d", k, n, MaxValueLen)
			}
		case json.Number:
			if len(v) > MaxValueLen {
				return fmt.Errorf("property %q number of %d characters, limit %d", k, len(v), MaxValueLen)
			}
		default:
			return fmt.Errorf("property %q must be a string or a number, got %T", k, v)
		}
	}
	return nil
}
