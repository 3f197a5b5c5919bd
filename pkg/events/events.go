// Package events defines the mapped Heap email event, its deterministic id
// and its Avro codec (schemas/heap_email_event.avsc).
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Heap event names (docs/ARCHITECTURE.md §8), exactly as Heap's own source names them.
const (
	NameOpen   = "Open Email"
	NameClick  = "Click Email Link"
	NameBounce = "Bounce Email"
	NameSent   = "Sent Email"
)

// Event is one mapped event, the value of heap.events.
type Event struct {
	ID            string
	SourceID      string
	AppID         string
	Identity      string
	EmailKey      string
	Name          string
	Time          time.Time
	CampaignID    string
	CampaignTitle string
	ListID        string
	IP            string
	URL           string
	BounceType    string
	Subject       string
	Tags          []string
	Lineage       Lineage
}

// Lineage points at the raw record an event was mapped from.
type Lineage struct {
	Topic      string
	Partition  int32
	Offset     int64
	Kind       string
	RequestID  string
	ReceivedAt time.Time
	// Salt is set by an operator's `ctl replay -new-keys`: it changes every
	// event id, so Heap keeps a second copy. Empty leaves ids as they are.
	Salt string
}

// Key is the heap.events record key: app id + identity keeps one user's
// events in order on one partition.
func (e Event) Key() []byte { return e.AppendKey(nil) }

// AppendKey appends Key to dst.
func (e Event) AppendKey(dst []byte) []byte {
	return append(append(append(dst, e.AppID...), 0), e.Identity...)
}

// PendingKey keys heap.events.pending by app, email and event: the topic is
// compacted, and a release is a tombstone for exactly that event.
func (e Event) PendingKey() []byte { return e.AppendPendingKey(nil) }

// AppendPendingKey appends PendingKey to dst.
func (e Event) AppendPendingKey(dst []byte) []byte {
	return append(append(append(append(append(dst, e.AppID...), 0), e.EmailKey...), 0), e.ID...)
}

// ID derives a deterministic event id from the parts that identify one
// Mailchimp event: the same event gets the same id on every input path.
func ID(parts ...string) string {
	// sha256 of the parts, each followed by 0x1f, hashed as one buffer: the
	// mapper derives an id per event, and this keeps it to one allocation.
	var stack [256]byte
	b := stack[:0]
	for _, p := range parts {
		b = append(append(b, p...), 0x1f)
	}
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// NormalizeEmail trims an address and lowercases it when lower is set.
func NormalizeEmail(email string, lower bool) string {
	email = strings.TrimSpace(email)
	if lower {
		email = strings.ToLower(email)
	}
	return email
}

// EmailKey is the case-insensitive key of an address: sha256 of the trimmed,
// lowercased email. It is what logs and caches see instead of the address.
func EmailKey(email string) string {
	var stack [128]byte
	sum := sha256.Sum256(append(stack[:0], NormalizeEmail(email, true)...))
	var out [64]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}
