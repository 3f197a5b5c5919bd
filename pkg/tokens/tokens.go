// Package tokens keeps Mailchimp OAuth tokens, encrypted with AES-GCM under a
// key from the environment, in the compacted topic mailchimp.tokens: Kafka
// is the truth, and a token never reaches a log or Redis in clear.
package tokens

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Token is one source's Mailchimp connection.
type Token struct {
	AccessToken string    `json:"access_token"`
	DC          string    `json:"dc"`
	APIEndpoint string    `json:"api_endpoint"`
	ConnectedAt time.Time `json:"connected_at"`
}

// String hides the secret from any accidental %v.
func (t Token) String() string { return "Token{dc:" + t.DC + ", access_token:<redacted>}" }

// ErrEndpoint marks an api_endpoint or data centre that is not Mailchimp's:
// a token is never sent there.
var ErrEndpoint = errors.New("not a Mailchimp API endpoint (https://<dc>.api.mailchimp.com)")

const apiHostSuffix = ".api.mailchimp.com"

// CheckEndpoint returns the data centre of endpoint, an api_endpoint as
// Mailchimp's metadata names it: exactly https://<dc>.api.mailchimp.com
// (a trailing slash allowed), dc as source.IsMailchimpDC says, no port,
// user, path, query or fragment. Anything else wraps ErrEndpoint.
func CheckEndpoint(endpoint string) (dc string, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Opaque != "" || u.Port() != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("tokens: api_endpoint %q: %w", endpoint, ErrEndpoint)
	}
	dc, ok := strings.CutSuffix(u.Host, apiHostSuffix)
	if !ok || !source.IsMailchimpDC(dc) {
		return "", fmt.Errorf("tokens: api_endpoint %q: %w", endpoint, ErrEndpoint)
	}
	return dc, nil
}

// Check says whether the token may be stored and used: its data centre is
// a Mailchimp one, and its api_endpoint, when recorded, is that data
// centre's host. Errors wrap ErrEndpoint.
func (t Token) Check() error {
	if !source.IsMailchimpDC(t.DC) {
		return fmt.Errorf("tokens: data centre %q: %w", t.DC, ErrEndpoint)
	}
	if t.APIEndpoint == "" {
		return nil
	}
	dc, err := CheckEndpoint(t.APIEndpoint)
	if err != nil {
		return err
	}
	if dc != t.DC {
		return fmt.Errorf("tokens: api_endpoint %q is not data centre %q: %w", t.APIEndpoint, t.DC, ErrEndpoint)
	}
	return nil
}

// APIURL is the API root (…/3.0) the token may be sent to, after Check:
// https://<dc>.api.mailchimp.com/3.0.
func (t Token) APIURL() (string, error) {
	if err := t.Check(); err != nil {
		return "", err
	}
	return "https://" + t.DC + apiHostSuffix + "/3.0", nil
}

// ParseKey decodes TOKEN_KEY: 32 bytes, base64 (standard or URL encoding).
func ParseKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, errors.New("TOKEN_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)")
}

// Store encrypts tokens into the topic and reads them back.
type Store struct {
	aead  cipher.AEAD
	topic string
	opts  []kgo.Opt // client options reaching the cluster
	cl    *kgo.Client
}

// NewStore returns a store writing through cl and reading with opts.
func NewStore(key []byte, topic string, cl *kgo.Client, opts []kgo.Opt) (*Store, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return &Store{aead: aead, topic: topic, cl: cl, opts: opts}, nil
}

// Save stores source's token durably.
func (s *Store) Save(ctx context.Context, source string, t Token) error {
	plain, err := json.Marshal(t)
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	// The source id is authenticated data: a token cannot be moved to another source.
	sealed := s.aead.Seal(nonce, nonce, plain, []byte(source))
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Key: []byte(source), Value: sealed}).FirstErr(); err != nil {
		return fmt.Errorf("tokens: save %s: %w", source, err)
	}
	return nil
}

// Get returns source's latest token.
func (s *Store) Get(ctx context.Context, source string) (Token, bool, error) {
	table, err := kafka.ReadTable(ctx, slices.Clone(s.opts), s.topic)
	if err != nil {
		return Token{}, false, fmt.Errorf("tokens: %w", err)
	}
	sealed, ok := table[source]
	if !ok {
		return Token{}, false, nil
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return Token{}, false, errors.New("tokens: stored value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(source))
	if err != nil {
		return Token{}, false, fmt.Errorf("tokens: decrypt %s (wrong TOKEN_KEY?): %w", source, err)
	}
	var t Token
	if err := json.Unmarshal(plain, &t); err != nil {
		return Token{}, false, fmt.Errorf("tokens: %w", err)
	}
	return t, true, nil
}
