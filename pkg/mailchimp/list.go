// Package mailchimp parses what Mailchimp sends or serves: audience (list)
// webhooks, Mailchimp Transactional (Mandrill) webhook events, Reports API
// email-activity members and campaign objects.
package mailchimp

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Payload kinds, carried in the kind header of mailchimp.raw.
const (
	KindListWebhook   = "list-webhook"
	KindMandrillEvent = "mandrill-event"
	KindEmailActivity = "email-activity"
	KindCampaign      = "campaign"
)

// ErrMalformed marks input that can never be parsed; callers dead-letter it.
var ErrMalformed = errors.New("malformed payload")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Audience webhook types (docs/ARCHITECTURE.md §6.2).
const (
	ListSubscribe   = "subscribe"
	ListUnsubscribe = "unsubscribe"
	ListProfile     = "profile"
	ListUpemail     = "upemail"
	ListCleaned     = "cleaned"
	ListCampaign    = "campaign"
)

// FiredAtLayout is the audience webhook's fired_at format; the zone is not
// documented, so it is read as UTC.
const FiredAtLayout = "2006-01-02 15:04:05"

// ListWebhook is one audience webhook body.
type ListWebhook struct {
	Type       string
	FiredAt    time.Time
	Data       map[string]string // data[...] fields, keyed by what is inside the brackets
	ListID     string
	CampaignID string
	Email      string
	Reason     string
	OldEmail   string
	NewEmail   string
	ID         string
	Subject    string
}

// ParseListWebhook parses an application/x-www-form-urlencoded audience
// webhook body.
func ParseListWebhook(body []byte) (ListWebhook, error) {
	// The mapper parses every audience webhook: the plain form is read in
	// one pass (url.ParseQuery's map of slices was most of this function's
	// cost), anything else as before.
	f, ok := scanListForm(body)
	if !ok {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return ListWebhook{}, malformed("list webhook: form: %v", err)
		}
		f = listForm{typ: form.Get("type"), fired: form.Get("fired_at"), data: map[string]string{}}
		for k, vs := range form {
			if inner, ok := strings.CutPrefix(k, "data["); ok && strings.HasSuffix(inner, "]") && len(vs) > 0 {
				f.data[strings.TrimSuffix(inner, "]")] = vs[0]
			}
		}
	}
	w := ListWebhook{Type: f.typ, Data: f.data}
	switch w.Type {
	case ListSubscribe, ListUnsubscribe, ListProfile, ListUpemail, ListCleaned, ListCampaign:
	case "":
		return ListWebhook{}, malformed("list webhook: missing type")
	default:
		return ListWebhook{}, malformed("list webhook: unknown type %q", w.Type)
	}
	fired := f.fired
	if fired == "" {
		return ListWebhook{}, malformed("list webhook: missing fired_at")
	}
	var err error
	w.FiredAt, err = parseFiredAt(fired)
	if err != nil {
		return ListWebhook{}, malformed("list webhook: fired_at %q: %v", fired, err)
	}
	w.ListID = w.Data["list_id"]
	w.CampaignID = w.Data["campaign_id"]
	w.Email = w.Data["email"]
	w.Reason = w.Data["reason"]
	w.OldEmail = w.Data["old_email"]
	w.NewEmail = w.Data["new_email"]
	w.ID = w.Data["id"]
	w.Subject = w.Data["subject"]
	blank := func(s string) bool { return strings.TrimSpace(s) == "" }
	switch w.Type {
	case ListUpemail:
		if blank(w.OldEmail) || blank(w.NewEmail) {
			return ListWebhook{}, malformed("list webhook upemail: missing old_email or new_email")
		}
	case ListCampaign:
		if blank(w.ID) {
			return ListWebhook{}, malformed("list webhook campaign: missing data[id]")
		}
	default:
		if blank(w.Email) {
			return ListWebhook{}, malformed("list webhook %s: missing data[email]", w.Type)
		}
	}
	return w, nil
}

// parseFiredAt is time.ParseInLocation(FiredAtLayout, s, time.UTC), with a
// fast path for the plain form every webhook has (the general parser is a
// visible share of mapping an audience webhook; BENCHMARKS.md).
func parseFiredAt(s string) (time.Time, error) {
	if len(s) == len(FiredAtLayout) && s[4] == '-' && s[7] == '-' && s[10] == ' ' && s[13] == ':' && s[16] == ':' {
		y, ok1 := digits(s[0:4])
		mo, ok2 := digits(s[5:7])
		d, ok3 := digits(s[8:10])
		h, ok4 := digits(s[11:13])
		mi, ok5 := digits(s[14:16])
		sec, ok6 := digits(s[17:19])
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && mo >= 1 && mo <= 12 && d >= 1 && h < 24 && mi < 60 && sec < 60 {
			t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, time.UTC)
			if t.Day() == d { // no day past the month's end
				return t, nil
			}
		}
	}
	return time.ParseInLocation(FiredAtLayout, s, time.UTC)
}

// digits reads s, ASCII digits only.
func digits(s string) (int, bool) {
	n := 0
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// PartitionKey groups a webhook with what must stay in order with it: a
// campaign's metadata and its events, or one address's changes.
func (w ListWebhook) PartitionKey() string {
	switch {
	case w.Type == ListCampaign:
		return "c:" + w.ID
	case w.CampaignID != "":
		return "c:" + w.CampaignID
	case w.Type == ListUpemail:
		return "e:" + EmailID(w.OldEmail)
	default:
		return "e:" + EmailID(w.Email)
	}
}

// EmailID is Mailchimp's subscriber hash: md5 of the lowercased address.
func EmailID(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}
