package kafka

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrTokenExpired is returned for an OAUTHBEARER token whose exp is past:
// whatever renews the token file has stopped.
var ErrTokenExpired = errors.New("token expired")

// ReadToken reads an OAUTHBEARER token from file. When the token is a JWT
// with an exp claim that is already past at now, it is refused: sending it
// would only earn the broker's rejection, and this error says why.
func ReadToken(file string, now time.Time) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("KAFKA_SASL_OAUTH_TOKEN_FILE: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("KAFKA_SASL_OAUTH_TOKEN_FILE %s is empty", file)
	}
	if exp, ok := jwtExpiry(tok); ok && !now.Before(exp) {
		return "", fmt.Errorf("KAFKA_SASL_OAUTH_TOKEN_FILE %s: %w at %s", file, ErrTokenExpired, exp.UTC().Format(time.RFC3339))
	}
	return tok, nil
}

// jwtExpiry returns a JWT's exp claim; ok is false for anything else (an
// opaque token is passed on as it is).
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.Unix(int64(*claims.Exp), 0), true
}
