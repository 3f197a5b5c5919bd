package config

import "github.com/mailchimp-heap/mailchimp-heap/pkg/source"

// The per-source settings live in package source, which is pure (the
// mapping depends on it); config keeps their names for its callers.

// Source is one Mailchimp account (or audience) feeding one Heap app.
type Source = source.Source

// Sources is the set of configured sources, by id.
type Sources = source.Sources

// Heap's public endpoints (docs/ARCHITECTURE.md §7).
const (
	HeapUSURL = source.HeapUSURL
	HeapEUURL = source.HeapEUURL
)

// Heap's documented bulk-track limits (docs/ARCHITECTURE.md §7).
const (
	HeapAppEventsPerMinute      = source.HeapAppEventsPerMinute
	HeapIdentityEventsPerMinute = source.HeapIdentityEventsPerMinute
)

// Event kinds a source can emit; sent is opt-in.
const (
	EventOpen   = source.EventOpen
	EventClick  = source.EventClick
	EventBounce = source.EventBounce
	EventSent   = source.EventSent
)

// JoinIdentity is the email property meaning "Heap's identity is the email".
const JoinIdentity = source.JoinIdentity

// DefaultPendingMaxAge is how long an unmatched event waits by default.
const DefaultPendingMaxAge = source.DefaultPendingMaxAge

// IsMailchimpDC reports whether dc has the form of a Mailchimp data centre.
func IsMailchimpDC(dc string) bool { return source.IsMailchimpDC(dc) }

// NewSources applies defaults, validates and indexes the given sources.
func NewSources(list ...Source) (*Sources, error) { return source.New(list...) }

// ParseSources reads the SOURCES_FILE format: YAML, so JSON too.
func ParseSources(data []byte) (*Sources, error) { return source.Parse(data) }

// LoadSources reads and parses the file at path.
func LoadSources(path string) (*Sources, error) { return source.Load(path) }
