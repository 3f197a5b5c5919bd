// Package source is the per-source settings of SOURCES_FILE: one Mailchimp
// account (or audience) feeding one Heap app, its defaults and validation.
// It is pure (no Kafka or Redis), so the mapping can depend on it.
package source

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Heap's public endpoints (docs/ARCHITECTURE.md §7).
const (
	HeapUSURL = "https://heapanalytics.com"
	HeapEUURL = "https://c.eu.heap-api.com"
)

// Heap's documented bulk-track limits (docs/ARCHITECTURE.md §7).
const (
	HeapAppEventsPerMinute      = 15000
	HeapIdentityEventsPerMinute = 1000
)

// Event kinds a source can emit; sent is opt-in.
const (
	EventOpen   = "open"
	EventClick  = "click"
	EventBounce = "bounce"
	EventSent   = "sent"
)

// JoinIdentity is the email property meaning "Heap's identity is the email".
const JoinIdentity = "identity"

// Source is one Mailchimp account (or audience) feeding one Heap app.
type Source struct {
	ID                 string   `yaml:"id" json:"id"`
	HeapAppID          string   `yaml:"heap_app_id" json:"heap_app_id"`
	HeapRegion         string   `yaml:"heap_region" json:"heap_region"`
	EmailProperty      string   `yaml:"email_property" json:"email_property"`
	EmailCase          string   `yaml:"email_case" json:"email_case"`
	WebhookSecret      string   `yaml:"webhook_secret" json:"webhook_secret"`
	MandrillWebhookURL string   `yaml:"mandrill_webhook_url" json:"mandrill_webhook_url"`
	MandrillWebhookKey string   `yaml:"mandrill_webhook_key" json:"mandrill_webhook_key"`
	Events             []string `yaml:"events" json:"events"`
	// Heap's documented limits by default; lower them to leave room for
	// other senders to the same app.
	AppEventsPerMinute      int `yaml:"app_events_per_minute" json:"app_events_per_minute"`
	IdentityEventsPerMinute int `yaml:"identity_events_per_minute" json:"identity_events_per_minute"`

	// Reports API polling (opens and clicks of marketing campaigns).
	MailchimpAPIKey string `yaml:"mailchimp_api_key" json:"mailchimp_api_key"`
	MailchimpAPIURL string `yaml:"mailchimp_api_url" json:"mailchimp_api_url"`
	// MailchimpOAuth: the account is connected through "Connect Mailchimp"
	// (OAuth) instead of an API key.
	MailchimpOAuth bool          `yaml:"mailchimp_oauth" json:"mailchimp_oauth"`
	PollInterval   time.Duration `yaml:"poll_interval" json:"poll_interval"`
	ActivityWindow time.Duration `yaml:"activity_window" json:"activity_window"`
	BackfillSince  time.Time     `yaml:"backfill_since" json:"backfill_since"`

	// Identity feed (POST /v1/identities), for a custom email join key.
	// IdentityToken is the bearer token callers present; ForwardIdentities
	// also sends each accepted call on to Heap's add_user_properties.
	IdentityToken     string `yaml:"identity_token" json:"identity_token"`
	ForwardIdentities bool   `yaml:"forward_identities" json:"forward_identities"`
	// PendingMaxAge is how long an event waits in heap.events.pending for its
	// identity before it is dead-lettered as unmatched.
	PendingMaxAge time.Duration `yaml:"pending_max_age" json:"pending_max_age"`
}

// Polls reports whether the source polls Mailchimp's Reports API.
func (s Source) Polls() bool { return s.MailchimpAPIKey != "" || s.MailchimpOAuth }

// Wants reports whether the source emits events of kind ev.
func (s Source) Wants(ev string) bool { return slices.Contains(s.Events, ev) }

// LowercaseEmail reports whether emails are lowercased before they become identities.
func (s Source) LowercaseEmail() bool { return s.EmailCase == "lower" }

// JoinsOnIdentity reports whether the email itself is the Heap identity.
func (s Source) JoinsOnIdentity() bool { return s.EmailProperty == JoinIdentity }

// HeapURL is the Track API base for this source; override (HEAP_API_URL) wins.
func (s Source) HeapURL(override string) string {
	switch {
	case override != "":
		return override
	case s.HeapRegion == "eu":
		return HeapEUURL
	default:
		return HeapUSURL
	}
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// mailchimpDC is the form of Mailchimp's data centres (us1 ... us21): the
// dc of an API key and of an OAuth token names the host credentials go to,
// https://<dc>.api.mailchimp.com, so it must be nothing else.
var mailchimpDC = regexp.MustCompile(`^[a-z]{2,5}[0-9]{1,3}$`)

// IsMailchimpDC reports whether dc has the form of a Mailchimp data centre.
func IsMailchimpDC(dc string) bool { return mailchimpDC.MatchString(dc) }

func (s *Source) applyDefaults() {
	if s.HeapRegion == "" {
		s.HeapRegion = "us"
	}
	if s.EmailProperty == "" {
		s.EmailProperty = JoinIdentity
	}
	if s.EmailCase == "" {
		s.EmailCase = "lower"
	}
	if len(s.Events) == 0 {
		s.Events = []string{EventOpen, EventClick, EventBounce}
	}
	if s.AppEventsPerMinute == 0 {
		s.AppEventsPerMinute = HeapAppEventsPerMinute
	}
	if s.IdentityEventsPerMinute == 0 {
		s.IdentityEventsPerMinute = HeapIdentityEventsPerMinute
	}
	if s.PollInterval == 0 {
		s.PollInterval = 5 * time.Minute
	}
	if s.ActivityWindow == 0 {
		s.ActivityWindow = 30 * 24 * time.Hour
	}
	if s.PendingMaxAge == 0 {
		s.PendingMaxAge = DefaultPendingMaxAge
	}
}

// DefaultPendingMaxAge is how long an unmatched event waits by default.
const DefaultPendingMaxAge = 7 * 24 * time.Hour

// Validate reports what is wrong with one source.
func (s Source) Validate() error {
	var errs []error
	if !idPattern.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("id %q must be 1-64 of [A-Za-z0-9_-]", s.ID))
	}
	if s.HeapAppID == "" {
		errs = append(errs, errors.New("heap_app_id is required"))
	}
	if s.HeapRegion != "us" && s.HeapRegion != "eu" {
		errs = append(errs, fmt.Errorf("heap_region %q must be us or eu", s.HeapRegion))
	}
	if s.EmailCase != "lower" && s.EmailCase != "preserve" {
		errs = append(errs, fmt.Errorf("email_case %q must be lower or preserve", s.EmailCase))
	}
	if s.WebhookSecret != "" && len(s.WebhookSecret) < 16 {
		errs = append(errs, errors.New("webhook_secret must be at least 16 characters"))
	}
	if (s.MandrillWebhookURL == "") != (s.MandrillWebhookKey == "") {
		errs = append(errs, errors.New("mandrill_webhook_url and mandrill_webhook_key go together"))
	}
	if s.AppEventsPerMinute < 1 || s.AppEventsPerMinute > HeapAppEventsPerMinute {
		errs = append(errs, fmt.Errorf("app_events_per_minute %d must be 1..%d (Heap's limit)", s.AppEventsPerMinute, HeapAppEventsPerMinute))
	}
	if s.IdentityEventsPerMinute < 1 || s.IdentityEventsPerMinute > HeapIdentityEventsPerMinute {
		errs = append(errs, fmt.Errorf("identity_events_per_minute %d must be 1..%d (Heap's limit)", s.IdentityEventsPerMinute, HeapIdentityEventsPerMinute))
	}
	if s.MailchimpAPIKey != "" {
		if i := strings.LastIndex(s.MailchimpAPIKey, "-"); i < 1 || !IsMailchimpDC(s.MailchimpAPIKey[i+1:]) {
			// The key itself is a secret: the message never quotes it.
			errs = append(errs, errors.New("mailchimp_api_key must look like <key>-<dc>, dc a Mailchimp data centre such as us21"))
		}
	}
	if s.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("poll_interval %s must be at least 1s", s.PollInterval))
	}
	if s.ActivityWindow <= 0 {
		errs = append(errs, fmt.Errorf("activity_window %s must be positive", s.ActivityWindow))
	}
	if s.IdentityToken != "" && len(s.IdentityToken) < 16 {
		errs = append(errs, errors.New("identity_token must be at least 16 characters"))
	}
	if s.ForwardIdentities && s.IdentityToken == "" {
		errs = append(errs, errors.New("forward_identities needs identity_token"))
	}
	if s.PendingMaxAge < 0 {
		errs = append(errs, fmt.Errorf("pending_max_age %s must be positive", s.PendingMaxAge))
	}
	for _, ev := range s.Events {
		if !slices.Contains([]string{EventOpen, EventClick, EventBounce, EventSent}, ev) {
			errs = append(errs, fmt.Errorf("events: unknown %q (open, click, bounce, sent)", ev))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("source %q: %w", s.ID, errors.Join(errs...))
	}
	return nil
}

// Sources is the set of configured sources, by id.
type Sources struct {
	list []Source
	byID map[string]Source
}

// New applies defaults, validates and indexes the given sources.
func New(list ...Source) (*Sources, error) {
	ss := &Sources{byID: map[string]Source{}}
	var errs []error
	for _, s := range list {
		s.applyDefaults()
		if err := s.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := ss.byID[s.ID]; dup {
			errs = append(errs, fmt.Errorf("source %q: duplicate id", s.ID))
			continue
		}
		ss.byID[s.ID] = s
		ss.list = append(ss.list, s)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	if len(ss.list) == 0 {
		return nil, errors.New("config: no sources")
	}
	return ss, nil
}

// Get returns the source with the given id.
func (ss *Sources) Get(id string) (Source, bool) {
	s, ok := ss.byID[id]
	return s, ok
}

// All returns the sources in file order.
func (ss *Sources) All() []Source { return slices.Clone(ss.list) }

// Parse reads the SOURCES_FILE format: YAML, so JSON too.
func Parse(data []byte) (*Sources, error) {
	var doc struct {
		Sources []Source `yaml:"sources"`
	}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("config: sources file: %w", err)
	}
	return New(doc.Sources...)
}

// Load reads and parses the file at path.
func Load(path string) (*Sources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data)
}
