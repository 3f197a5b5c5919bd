package mailchimp_test

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// md5Hex is Mailchimp's subscriber hash, computed here independently of EmailID.
func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestParseListWebhookFixtures(t *testing.T) {
	tests := map[string]struct {
		want    mailchimp.ListWebhook
		wantKey string
	}{
		"campaign": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListCampaign,
				FiredAt: utc("2026-10-02T14:00:01Z"),
				Data: map[string]string{
					"id": "b3f0a9c1d2", "subject": "October product update", "status": "sent", "reason": "", "list_id": "7c1e5d2a90",
				},
				ListID:  "7c1e5d2a90",
				ID:      "b3f0a9c1d2",
				Subject: "October product update",
			},
			wantKey: "c:b3f0a9c1d2",
		},
		"cleaned-abuse": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListCleaned,
				FiredAt: utc("2026-10-02T18:03:55Z"),
				Data: map[string]string{
					"list_id": "7c1e5d2a90", "campaign_id": "b3f0a9c1d2", "reason": "abuse", "email": "tomas.novak@example.net",
				},
				ListID:     "7c1e5d2a90",
				CampaignID: "b3f0a9c1d2",
				Email:      "tomas.novak@example.net",
				Reason:     "abuse",
			},
			wantKey: "c:b3f0a9c1d2",
		},
		"cleaned-hard": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListCleaned,
				FiredAt: utc("2026-10-02T14:21:09Z"),
				Data: map[string]string{
					"list_id": "7c1e5d2a90", "campaign_id": "b3f0a9c1d2", "reason": "hard", "email": "Priya.Raman@Example.com",
				},
				ListID:     "7c1e5d2a90",
				CampaignID: "b3f0a9c1d2",
				Email:      "Priya.Raman@Example.com", // the parser keeps the case; mapping normalises
				Reason:     "hard",
			},
			wantKey: "c:b3f0a9c1d2",
		},
		"profile": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListProfile,
				FiredAt: utc("2026-10-03T12:00:00Z"),
				Data: map[string]string{
					"id": "8a25ff1d98", "list_id": "7c1e5d2a90", "email": "new.reader@example.org", "email_type": "html",
					"merges][FNAME": "Ana Maria", "ip_opt": "198.51.100.20",
				},
				ListID: "7c1e5d2a90",
				Email:  "new.reader@example.org",
				ID:     "8a25ff1d98",
			},
			wantKey: "e:" + md5Hex("new.reader@example.org"),
		},
		"subscribe": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListSubscribe,
				FiredAt: utc("2026-10-01T08:00:12Z"),
				Data: map[string]string{
					"id": "8a25ff1d98", "list_id": "7c1e5d2a90", "email": "new.reader@example.org", "email_type": "html",
					"merges][EMAIL": "new.reader@example.org", "merges][FNAME": "Ana", "merges][LNAME": "Silva",
					"ip_opt": "198.51.100.20", "ip_signup": "198.51.100.20",
				},
				ListID: "7c1e5d2a90",
				Email:  "new.reader@example.org",
				ID:     "8a25ff1d98",
			},
			wantKey: "e:" + md5Hex("new.reader@example.org"),
		},
		"unsubscribe": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListUnsubscribe,
				FiredAt: utc("2026-10-03T11:47:30Z"),
				Data: map[string]string{
					"action": "unsub", "reason": "manual", "id": "8a25ff1d98", "list_id": "7c1e5d2a90",
					"email": "new.reader@example.org", "email_type": "html", "merges][EMAIL": "new.reader@example.org",
					"ip_opt": "198.51.100.20", "campaign_id": "b3f0a9c1d2",
				},
				ListID:     "7c1e5d2a90",
				CampaignID: "b3f0a9c1d2",
				Email:      "new.reader@example.org",
				Reason:     "manual",
				ID:         "8a25ff1d98",
			},
			wantKey: "c:b3f0a9c1d2",
		},
		"upemail": {
			want: mailchimp.ListWebhook{
				Type:    mailchimp.ListUpemail,
				FiredAt: utc("2026-10-04T09:30:00Z"),
				Data: map[string]string{
					"list_id": "7c1e5d2a90", "new_id": "51aa6e4c2b", "new_email": "ana.silva@example.org", "old_email": "new.reader@example.org",
				},
				ListID:   "7c1e5d2a90",
				OldEmail: "new.reader@example.org",
				NewEmail: "ana.silva@example.org",
			},
			// Keyed by the old address, so it stays in order with what came before.
			wantKey: "e:" + md5Hex("new.reader@example.org"),
		},
	}
	all := fixtures.ListWebhooks()
	for name := range all {
		if _, ok := tests[name]; !ok {
			t.Errorf("fixture list-webhooks/%s.form has no expectation here", name)
		}
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			body, ok := all[name]
			if !ok {
				t.Fatalf("fixture list-webhooks/%s.form missing", name)
			}
			got, err := mailchimp.ParseListWebhook(body)
			if err != nil {
				t.Fatalf("ParseListWebhook() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseListWebhook() mismatch (-want +got):\n%s", diff)
			}
			if got.FiredAt.Location() != time.UTC {
				t.Errorf("FiredAt location = %v, want UTC", got.FiredAt.Location())
			}
			if k := got.PartitionKey(); k != tt.wantKey {
				t.Errorf("PartitionKey() = %q, want %q", k, tt.wantKey)
			}
		})
	}
}

func TestParseListWebhookMalformed(t *testing.T) {
	const fired = "&fired_at=2026-10-02+14%3A21%3A09"
	tests := []struct {
		name string
		body string
	}{
		{name: "empty body", body: ""},
		{name: "missing type", body: "fired_at=2026-10-02+14%3A21%3A09&data%5Bemail%5D=a%40example.com"},
		{name: "empty type", body: "type=" + fired + "&data%5Bemail%5D=a%40example.com"},
		{name: "unknown type", body: "type=open" + fired + "&data%5Bemail%5D=a%40example.com"},
		{name: "type is case-sensitive", body: "type=Subscribe" + fired + "&data%5Bemail%5D=a%40example.com"},
		{name: "missing fired_at", body: "type=subscribe&data%5Bemail%5D=a%40example.com"},
		{name: "fired_at in RFC 3339", body: "type=subscribe&fired_at=2026-10-02T14%3A21%3A09Z&data%5Bemail%5D=a%40example.com"},
		{name: "fired_at not a time", body: "type=subscribe&fired_at=yesterday&data%5Bemail%5D=a%40example.com"},
		{name: "fired_at out of range", body: "type=subscribe&fired_at=2026-13-02+25%3A00%3A00&data%5Bemail%5D=a%40example.com"},
		{name: "subscribe missing email", body: "type=subscribe" + fired + "&data%5Blist_id%5D=7c1e5d2a90"},
		{name: "unsubscribe missing email", body: "type=unsubscribe" + fired},
		{name: "profile missing email", body: "type=profile" + fired + "&data%5Bid%5D=8a25ff1d98"},
		{name: "cleaned missing email", body: "type=cleaned" + fired + "&data%5Breason%5D=hard&data%5Bcampaign_id%5D=b3f0a9c1d2"},
		{name: "cleaned blank email", body: "type=cleaned" + fired + "&data%5Breason%5D=hard&data%5Bemail%5D=+++"},
		{name: "email outside data[]", body: "type=subscribe" + fired + "&email=a%40example.com"},
		{name: "upemail without new_email", body: "type=upemail" + fired + "&data%5Bold_email%5D=a%40example.com"},
		{name: "upemail without old_email", body: "type=upemail" + fired + "&data%5Bnew_email%5D=b%40example.com"},
		{name: "upemail blank new_email", body: "type=upemail" + fired + "&data%5Bold_email%5D=a%40example.com&data%5Bnew_email%5D=+"},
		{name: "campaign without id", body: "type=campaign" + fired + "&data%5Bsubject%5D=Hi"},
		{name: "bad percent-encoding", body: "type=subscribe" + fired + "&data%5Bemail%5D=a%ZZexample.com"},
		{name: "truncated percent-encoding", body: "type=subscribe" + fired + "&data%5Bemail%5D=a%4"},
		{name: "semicolon separator", body: "type=subscribe;fired_at=2026-10-02+14%3A21%3A09;data%5Bemail%5D=a%40example.com"},
		{name: "json instead of a form", body: `{"type":"subscribe","fired_at":"2026-10-02 14:21:09"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseListWebhook([]byte(tt.body))
			if err == nil {
				t.Fatalf("ParseListWebhook() = %+v, want error", got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if diff := cmp.Diff(mailchimp.ListWebhook{}, got); diff != "" {
				t.Errorf("ParseListWebhook() returned a partial value with its error:\n%s", diff)
			}
		})
	}
}

func TestParseListWebhookLenient(t *testing.T) {
	// What Mailchimp may plausibly send and must still parse.
	tests := []struct {
		name string
		body string
		want func(mailchimp.ListWebhook) string // "" when fine
	}{
		{
			name: "unencoded brackets and repeated keys keep the first value",
			body: "type=subscribe&fired_at=2026-10-02 14:21:09&data[email]=a@example.com&data[email]=b@example.com&type=profile",
			want: func(w mailchimp.ListWebhook) string {
				if w.Type != mailchimp.ListSubscribe || w.Email != "a@example.com" {
					return "want type subscribe and the first email"
				}
				return ""
			},
		},
		{
			name: "fields in any order, extra fields ignored",
			body: "data%5Bemail%5D=a%40example.com&extra=1&data%5Bnested%5D%5Bx%5D=y&fired_at=2026-10-02+14%3A21%3A09&type=unsubscribe",
			want: func(w mailchimp.ListWebhook) string {
				if w.Type != mailchimp.ListUnsubscribe || w.Email != "a@example.com" || w.Data["nested][x"] != "y" {
					return "want unsubscribe for a@example.com with nested data"
				}
				return ""
			},
		},
		{
			name: "cleaned without campaign keys by email",
			body: "type=cleaned&fired_at=2026-10-02+14%3A21%3A09&data%5Breason%5D=hard&data%5Bemail%5D=+A%40Example.com+",
			want: func(w mailchimp.ListWebhook) string {
				if k := w.PartitionKey(); k != "e:"+md5Hex("a@example.com") {
					return "partition key " + k + " is not the hash of the normalised email"
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseListWebhook([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseListWebhook() error = %v", err)
			}
			if msg := tt.want(got); msg != "" {
				t.Errorf("%s; got %+v", msg, got)
			}
		})
	}
}

func TestListWebhookPartitionKey(t *testing.T) {
	tests := []struct {
		name string
		w    mailchimp.ListWebhook
		want string
	}{
		{name: "campaign webhook keys by its id", w: mailchimp.ListWebhook{Type: mailchimp.ListCampaign, ID: "c1", CampaignID: "other"}, want: "c:c1"},
		{name: "campaign id wins over email", w: mailchimp.ListWebhook{Type: mailchimp.ListCleaned, CampaignID: "c2", Email: "a@example.com"}, want: "c:c2"},
		{name: "upemail keys by old email", w: mailchimp.ListWebhook{Type: mailchimp.ListUpemail, OldEmail: "Old@Example.com", NewEmail: "new@example.com"}, want: "e:" + md5Hex("old@example.com")},
		{name: "subscribe keys by email", w: mailchimp.ListWebhook{Type: mailchimp.ListSubscribe, Email: " A@EXAMPLE.COM"}, want: "e:" + md5Hex("a@example.com")},
		{name: "unsubscribe with campaign keys by campaign", w: mailchimp.ListWebhook{Type: mailchimp.ListUnsubscribe, Email: "a@example.com", CampaignID: "c3"}, want: "c:c3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.PartitionKey(); got != tt.want {
				t.Errorf("PartitionKey() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmailID(t *testing.T) {
	tests := []struct {
		email string
		want  string
	}{
		{"priya.raman@example.com", md5Hex("priya.raman@example.com")},
		{"Priya.Raman@Example.com", md5Hex("priya.raman@example.com")},
		{"  PRIYA.RAMAN@EXAMPLE.COM\t\n", md5Hex("priya.raman@example.com")},
		{"", md5Hex("")},
		// A known md5 vector, so the hash itself is pinned, not only its inputs.
		{"", "d41d8cd98f00b204e9800998ecf8427e"},
	}
	for _, tt := range tests {
		if got := mailchimp.EmailID(tt.email); got != tt.want {
			t.Errorf("EmailID(%q) = %q, want %q", tt.email, got, tt.want)
		}
	}
}

// TestEmailIDMatchesFixtures checks EmailID against the email_id Mailchimp
// served with each email-activity member.
func TestEmailIDMatchesFixtures(t *testing.T) {
	members := fixtures.ActivityMembers()
	if len(members) == 0 {
		t.Fatal("no activity fixtures")
	}
	for _, raw := range members {
		m, err := mailchimp.ParseActivityMember(raw)
		if err != nil {
			t.Fatalf("ParseActivityMember() error = %v", err)
		}
		if got := mailchimp.EmailID(m.EmailAddress); got != m.EmailID {
			t.Errorf("EmailID(%q) = %q, fixture email_id = %q", m.EmailAddress, got, m.EmailID)
		}
		if got := md5Hex(strings.ToLower(m.EmailAddress)); got != m.EmailID {
			t.Errorf("md5(lower(%q)) = %q, fixture email_id = %q", m.EmailAddress, got, m.EmailID)
		}
	}
}
