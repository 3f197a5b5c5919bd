package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
)

// Mapping is the value of a heap.identities record: the Heap identity that
// owns an email in an app, or, for an address that changed (an audience
// upemail webhook), the older address whose identity it inherits.
type Mapping struct {
	App      string    `json:"app"`
	EmailKey string    `json:"email_key"`
	Identity string    `json:"identity,omitempty"`
	AliasOf  string    `json:"alias_of,omitempty"` // email key of the old address
	Source   string    `json:"source,omitempty"`
	At       time.Time `json:"at"`
}

// RecordKey is the heap.identities key of (app, email key): the topic is
// compacted, so the latest mapping per address wins.
func RecordKey(app, emailKey string) []byte { return []byte(app + "\x00" + emailKey) }

// Bind is the mapping of email (any case, untrimmed) to identity, which is
// kept exactly as given: Heap identities are case-sensitive.
func Bind(source, app, email, ident string, at time.Time) Mapping {
	return Mapping{App: app, EmailKey: events.EmailKey(email), Identity: ident, Source: source, At: at.UTC()}
}

// Alias is the mapping that carries the old address's identity to the new one.
func Alias(source, app, oldEmail, newEmail string, at time.Time) Mapping {
	return Mapping{App: app, EmailKey: events.EmailKey(newEmail), AliasOf: events.EmailKey(oldEmail), Source: source, At: at.UTC()}
}

// Validate reports a mapping that must not be recorded.
func (m Mapping) Validate() error {
	switch {
	case m.App == "" || m.EmailKey == "":
		return errors.New("identity: mapping needs an app and an email")
	case (m.Identity == "") == (m.AliasOf == ""):
		return errors.New("identity: mapping needs exactly one of identity and alias_of")
	case m.AliasOf == m.EmailKey:
		return errors.New("identity: an address cannot be an alias of itself")
	case strings.TrimSpace(m.Identity) != m.Identity:
		return errors.New("identity: identity has leading or trailing spaces")
	}
	return nil
}

// Record encodes m for topic.
func (m Mapping) Record(topic string) (*kgo.Record, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	v, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &kgo.Record{Topic: topic, Key: RecordKey(m.App, m.EmailKey), Value: v}, nil
}

// Decode reads a heap.identities record value.
func Decode(value []byte) (Mapping, error) {
	var m Mapping
	if err := json.Unmarshal(value, &m); err != nil {
		return Mapping{}, fmt.Errorf("identity: decode: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Mapping{}, err
	}
	return m, nil
}
