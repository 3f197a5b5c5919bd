package kafka_test

import (
	"encoding/base64"
	"fmt"
	"strconv"
)

func b64(s string) string               { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
func itoa(n int64) string               { return strconv.FormatInt(n, 10) }
func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
