// Package mapping turns one raw Mailchimp payload unit into Heap events, by
// the default mapping of docs/ARCHITECTURE.md §8. It is pure: identity and campaign
// lookups happen in the mapper, which owns the Redis round trips.
package mapping

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Campaign is what the pipeline knows of a campaign, learned from a
// payload; package campaigns stores it (as campaigns.Meta).
type Campaign struct {
	ID     string
	Title  string
	ListID string
	Type   string
	// Fallback marks a title guessed from an audience campaign webhook's
	// subject; it never replaces a title read from the API.
	Fallback bool
}

// Result is what one payload unit maps to.
type Result struct {
	Events []events.Event // Identity is empty when the source joins on a custom property
	// Campaign is set when the payload describes a campaign.
	Campaign *Campaign
	// EmailChange is set by an audience upemail webhook: the new address
	// inherits the old one's Heap identity.
	EmailChange *EmailChange
}

// EmailChange is a subscriber's address change, as Mailchimp reported it.
type EmailChange struct {
	Old, New string
	At       time.Time
}

// Map maps one payload unit of the given kind for src. An error wraps
// mailchimp.ErrMalformed when the payload can never be mapped: it does not
// parse, or it does not validate (an address with control characters or
// invalid UTF-8, an event time outside mailchimp.EventTimeRange of
// lin.ReceivedAt; a zero ReceivedAt checks the year 9999 only). It puts a
// copy of src on the heap; the mapper's hot path is MapAppend.
func Map(src source.Source, kind string, raw []byte, lin events.Lineage) (Result, error) {
	res, _, err := MapAppend(nil, &src, kind, raw, lin)
	return res, err
}

// MapAppend is Map with the events appended to evs, as append does: it
// returns the result, whose Events is the appended part (capacity capped),
// and evs grown by it. A caller mapping many payloads gives their events
// one array (the mapper: one per transaction chunk, reused).
func MapAppend(evs []events.Event, src *source.Source, kind string, raw []byte, lin events.Lineage) (Result, []events.Event, error) {
	b := builder{src: src, lin: lin, out: Result{Events: evs}}
	res, err := b.mapKind(kind, raw)
	if err != nil || len(b.out.Events) == len(evs) {
		res.Events = nil
		return res, evs, err
	}
	all := b.out.Events
	res.Events = all[len(evs):len(all):len(all)]
	return res, all, nil
}

func (b *builder) mapKind(kind string, raw []byte) (Result, error) {
	switch kind {
	case mailchimp.KindListWebhook:
		w, err := mailchimp.ParseListWebhook(raw)
		if err == nil {
			err = w.Validate(b.lin.ReceivedAt)
		}
		if err != nil {
			return Result{}, err
		}
		return b.list(w), nil
	case mailchimp.KindMandrillEvent:
		e, err := mailchimp.ParseMandrillEvent(raw)
		if err == nil {
			err = e.Validate(b.lin.ReceivedAt)
		}
		if err != nil {
			return Result{}, err
		}
		return b.mandrill(e)
	case mailchimp.KindEmailActivity:
		m, err := mailchimp.ParseActivityMember(raw)
		if err == nil {
			err = m.Validate(b.lin.ReceivedAt)
		}
		if err != nil {
			return Result{}, err
		}
		return b.activity(m), nil
	case mailchimp.KindCampaign:
		c, err := mailchimp.ParseCampaign(raw)
		if err != nil {
			return Result{}, err
		}
		return Result{Campaign: &Campaign{ID: c.ID, Title: c.Settings.Title, ListID: c.Recipients.ListID, Type: c.Type}}, nil
	default:
		return Result{}, fmt.Errorf("%w: unknown payload kind %q", mailchimp.ErrMalformed, kind)
	}
}

type builder struct {
	src *source.Source
	lin events.Lineage
	out Result
}

// event starts an event for email; id parts identify the Mailchimp event.
func (b *builder) event(name, email string, at time.Time, idParts ...string) *events.Event {
	lower := events.NormalizeEmail(email, true)
	var stack [12]string // the id's parts, without a heap allocation
	parts := append(append(append(stack[:0], b.src.HeapAppID), idParts...), lower)
	if b.lin.Salt != "" {
		// A replay with new keys: only then do ids change.
		parts = append(parts, "replay-salt", b.lin.Salt)
	}
	e := events.Event{
		ID:       events.ID(parts...),
		SourceID: b.src.ID,
		AppID:    b.src.HeapAppID,
		EmailKey: events.EmailKey(lower), // the key of the normalized address is the key of the address
		Name:     name,
		Time:     at.UTC(),
		Lineage:  b.lin,
	}
	if b.src.JoinsOnIdentity() {
		e.Identity = events.NormalizeEmail(email, b.src.LowercaseEmail())
	}
	b.out.Events = append(b.out.Events, e)
	return &b.out.Events[len(b.out.Events)-1]
}

// bounce adds the one Bounce Email of a campaign (or message) and address.
func (b *builder) bounce(campaign, email, bounceType string, at time.Time) *events.Event {
	e := b.event(events.NameBounce, email, at, "bounce", campaign)
	e.BounceType = bounceType
	return e
}

func (b *builder) list(w mailchimp.ListWebhook) Result {
	switch w.Type {
	case mailchimp.ListCleaned:
		// "abuse" is a spam complaint, not a bounce.
		if w.Reason == "hard" && b.src.Wants(source.EventBounce) {
			e := b.bounce(w.CampaignID, w.Email, "hard", w.FiredAt)
			e.CampaignID, e.ListID = w.CampaignID, w.ListID
		}
	case mailchimp.ListUpemail:
		b.out.EmailChange = &EmailChange{Old: w.OldEmail, New: w.NewEmail, At: w.FiredAt}
	case mailchimp.ListCampaign:
		b.out.Campaign = &Campaign{ID: w.ID, Title: w.Subject, ListID: w.ListID, Fallback: true}
	}
	return b.out
}

func (b *builder) mandrill(m mailchimp.MandrillEvent) (Result, error) {
	if m.Event == "" {
		return b.out, nil // a sync event: nothing to map
	}
	at, err := m.Time(b.lin.ReceivedAt)
	if err != nil {
		return Result{}, err // not reached: Validate refused such a ts
	}
	msg := m.MessageID()
	var e *events.Event
	switch m.Event {
	case mailchimp.MandrillOpen:
		if b.src.Wants(source.EventOpen) {
			e = b.event(events.NameOpen, m.Msg.Email, at, "mandrill", msg, m.Event, at.Format(time.RFC3339))
		}
	case mailchimp.MandrillClick:
		if b.src.Wants(source.EventClick) {
			e = b.event(events.NameClick, m.Msg.Email, at, "mandrill", msg, m.Event, at.Format(time.RFC3339), m.URL)
			e.URL = m.URL
		}
	case mailchimp.MandrillHardBounce, mailchimp.MandrillSoftBounce:
		if b.src.Wants(source.EventBounce) {
			e = b.bounce("mandrill:"+msg, m.Msg.Email, strings.TrimSuffix(m.Event, "_bounce"), at)
		}
	case mailchimp.MandrillSend:
		if b.src.Wants(source.EventSent) {
			e = b.event(events.NameSent, m.Msg.Email, at, "mandrill", msg, m.Event)
			e.Subject, e.Tags = m.Msg.Subject, m.Msg.Tags
		}
	}
	if e != nil {
		// No campaign exists for a transactional message: its tags and
		// subject stand in (docs/ARCHITECTURE.md §8).
		e.CampaignID = strings.Join(m.Msg.Tags, ",")
		e.CampaignTitle = m.Msg.Subject
		e.IP = m.IP
	}
	return b.out, nil
}

func (b *builder) activity(m mailchimp.ActivityMember) Result {
	for _, a := range m.Activity {
		var e *events.Event
		ts := a.Timestamp.UTC().Format(time.RFC3339)
		switch a.Action {
		case mailchimp.ActionOpen:
			if b.src.Wants(source.EventOpen) {
				e = b.event(events.NameOpen, m.EmailAddress, a.Timestamp, "activity", m.CampaignID, a.Action, ts)
			}
		case mailchimp.ActionClick:
			if b.src.Wants(source.EventClick) {
				e = b.event(events.NameClick, m.EmailAddress, a.Timestamp, "activity", m.CampaignID, a.Action, ts, a.URL)
				e.URL = a.URL
			}
		case mailchimp.ActionBounce:
			if b.src.Wants(source.EventBounce) {
				e = b.bounce(m.CampaignID, m.EmailAddress, a.Type, a.Timestamp)
			}
		}
		if e != nil {
			e.CampaignID, e.ListID, e.IP = m.CampaignID, m.ListID, a.IP
		}
	}
	return b.out
}
