package mailchimp_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

func TestParseActivityMemberFixtures(t *testing.T) {
	const campaign, list = "b3f0a9c1d2", "7c1e5d2a90"
	want := []mailchimp.ActivityMember{
		{
			CampaignID: campaign, ListID: list, EmailID: "57f10fe52eefa6e70bd826c0717b6390", EmailAddress: "Priya.Raman@Example.com",
			Activity: []mailchimp.Activity{{Action: "bounce", Type: "hard", Timestamp: utc("2026-10-02T14:20:58Z")}},
		},
		{
			CampaignID: campaign, ListID: list, EmailID: "d61ebacf1b317bfae9f4ec42167f4228", EmailAddress: "jordan.lee@example.com",
			Activity: []mailchimp.Activity{
				{Action: "open", Timestamp: utc("2026-10-02T15:02:11Z"), IP: "192.0.2.44"},
				{Action: "open", Timestamp: utc("2026-10-02T19:45:00Z"), IP: "192.0.2.45"},
				{Action: "click", Timestamp: utc("2026-10-02T15:02:40Z"), IP: "192.0.2.44", URL: "https://shop.example/october?utm_source=mailchimp&utm_campaign=oct"},
			},
		},
		{
			CampaignID: campaign, ListID: list, EmailID: "b81709bf8e8273cdec5407dd012d789e", EmailAddress: "mei.chen@example.com",
			Activity: []mailchimp.Activity{{Action: "open", Timestamp: utc("2026-10-02T16:10:05Z"), IP: "203.0.113.9"}},
		},
		{
			CampaignID: campaign, ListID: list, EmailID: "9556f88863e59e09a652dfab733e4742", EmailAddress: "full.box@example.com",
			Activity: []mailchimp.Activity{{Action: "bounce", Type: "soft", Timestamp: utc("2026-10-02T14:21:30Z")}},
		},
	}
	members := fixtures.ActivityMembers()
	if len(members) != len(want) {
		t.Fatalf("fixtures hold %d members, want %d", len(members), len(want))
	}
	for i, raw := range members {
		t.Run(want[i].EmailAddress, func(t *testing.T) {
			got, err := mailchimp.ParseActivityMember(raw)
			if err != nil {
				t.Fatalf("ParseActivityMember() error = %v", err)
			}
			// cmp compares time.Time with Equal, so the +00:00 zone is fine.
			if diff := cmp.Diff(want[i], got); diff != "" {
				t.Errorf("ParseActivityMember() mismatch (-want +got):\n%s", diff)
			}
			if k := got.PartitionKey(); k != "c:"+campaign {
				t.Errorf("PartitionKey() = %q, want c:%s", k, campaign)
			}
		})
	}
}

func TestParseActivityMember(t *testing.T) {
	// A member with no activity yet is valid (nothing to map).
	got, err := mailchimp.ParseActivityMember([]byte(`{"campaign_id":"c","email_address":"a@example.com","activity":[]}`))
	if err != nil {
		t.Fatalf("ParseActivityMember() error = %v", err)
	}
	if diff := cmp.Diff(mailchimp.ActivityMember{CampaignID: "c", EmailAddress: "a@example.com", Activity: []mailchimp.Activity{}}, got); diff != "" {
		t.Errorf("ParseActivityMember() mismatch (-want +got):\n%s", diff)
	}
}

func TestParseActivityMemberMalformed(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{name: "empty", raw: ""},
		{name: "not json", raw: "campaign_id=c"},
		{name: "array", raw: `[{"campaign_id":"c","email_address":"a@example.com"}]`},
		{name: "missing campaign_id", raw: `{"email_address":"a@example.com","activity":[]}`},
		{name: "missing email_address", raw: `{"campaign_id":"c","activity":[]}`},
		{name: "blank email_address", raw: `{"campaign_id":"c","email_address":" \t","activity":[]}`},
		{name: "campaign_id not a string", raw: `{"campaign_id":7,"email_address":"a@example.com"}`},
		{name: "activity without action", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":[{"timestamp":"2026-10-02T15:02:11+00:00"}]}`},
		{name: "activity without timestamp", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":[{"action":"open"}]}`},
		{name: "activity with zero timestamp", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":[{"action":"open","timestamp":"0001-01-01T00:00:00Z"}]}`},
		{name: "timestamp not RFC 3339", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":[{"action":"open","timestamp":"2026-10-02 15:02:11"}]}`},
		{name: "second activity bad", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":[{"action":"open","timestamp":"2026-10-02T15:02:11Z"},{"action":"","timestamp":"2026-10-02T15:02:11Z"}]}`},
		{name: "activity not an array", raw: `{"campaign_id":"c","email_address":"a@example.com","activity":{"action":"open"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseActivityMember([]byte(tt.raw))
			if err == nil {
				t.Fatalf("ParseActivityMember() = %+v, want error", got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestParseCampaignFixtures(t *testing.T) {
	type want struct {
		id, typ, status, sendTime, list, title, subject string
	}
	wants := []want{
		{"b3f0a9c1d2", "regular", "sent", "2026-10-02T14:00:00+00:00", "7c1e5d2a90", "October product update", "October product update (subject)"},
		{"c4e1b0d2e3", "plaintext", "sent", "2026-10-02T14:00:00+00:00", "7c1e5d2a90", "Plain text notice", "Plain text notice (subject)"},
		{"d5f2c1e3f4", "variate", "sent", "2026-10-02T14:00:00+00:00", "7c1e5d2a90", "Subject line test (multivariate)", "Subject line test (multivariate) (subject)"},
		{"e6a3d2f4a5", "rss", "sent", "2026-10-02T14:00:00+00:00", "7c1e5d2a90", "Blog digest", "Blog digest (subject)"},
		{"f7b4e3a5b6", "regular", "save", "", "7c1e5d2a90", "Draft for November", "Draft for November (subject)"},
	}
	campaigns := fixtures.Campaigns()
	if len(campaigns) != len(wants) {
		t.Fatalf("fixture holds %d campaigns, want %d", len(campaigns), len(wants))
	}
	for i, raw := range campaigns {
		w := wants[i]
		t.Run(w.id, func(t *testing.T) {
			got, err := mailchimp.ParseCampaign(raw)
			if err != nil {
				t.Fatalf("ParseCampaign() error = %v", err)
			}
			var exp mailchimp.Campaign
			exp.ID, exp.Type, exp.Status, exp.SendTime = w.id, w.typ, w.status, w.sendTime
			exp.Recipients.ListID = w.list
			exp.Settings.Title, exp.Settings.SubjectLine = w.title, w.subject
			if diff := cmp.Diff(exp, got); diff != "" {
				t.Errorf("ParseCampaign() mismatch (-want +got):\n%s", diff)
			}
			if k := got.PartitionKey(); k != "c:"+w.id {
				t.Errorf("PartitionKey() = %q, want c:%s", k, w.id)
			}
		})
	}
}

func TestParseCampaignMalformed(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{name: "empty", raw: ""},
		{name: "not json", raw: "id=x"},
		{name: "the whole page", raw: string(fixtures.Read("marketing-api/campaigns.json"))},
		{name: "missing id", raw: `{"type":"regular","settings":{"title":"t"}}`},
		{name: "id not a string", raw: `{"id":41098014}`},
		{name: "settings not an object", raw: `{"id":"x","settings":"t"}`},
		{name: "problem json", raw: string(fixtures.Read("marketing-api/error-404.json"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mailchimp.ParseCampaign([]byte(tt.raw))
			if err == nil {
				t.Fatalf("ParseCampaign() = %+v, want error", got)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}
