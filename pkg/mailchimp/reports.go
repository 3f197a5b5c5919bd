package mailchimp

import (
	"encoding/json"
	"strings"
	"time"
)

// ActivityMember is one item of GET /3.0/reports/{id}/email-activity.
type ActivityMember struct {
	CampaignID   string     `json:"campaign_id"`
	ListID       string     `json:"list_id"`
	EmailID      string     `json:"email_id"`
	EmailAddress string     `json:"email_address"`
	Activity     []Activity `json:"activity"`
}

// Activity is one action of a member.
type Activity struct {
	Action    string    `json:"action"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	URL       string    `json:"url"`
	IP        string    `json:"ip"`
}

// Activity actions.
const (
	ActionOpen   = "open"
	ActionClick  = "click"
	ActionBounce = "bounce"
)

// ParseActivityMember parses one email-activity member item.
func ParseActivityMember(raw []byte) (ActivityMember, error) {
	var m ActivityMember
	if err := json.Unmarshal(raw, &m); err != nil {
		return ActivityMember{}, malformed("email-activity member: %v", err)
	}
	if m.CampaignID == "" {
		return ActivityMember{}, malformed("email-activity member: missing campaign_id")
	}
	if strings.TrimSpace(m.EmailAddress) == "" {
		return ActivityMember{}, malformed("email-activity member: missing email_address")
	}
	for i, a := range m.Activity {
		if a.Action == "" || a.Timestamp.IsZero() {
			return ActivityMember{}, malformed("email-activity member: activity[%d] lacks action or timestamp", i)
		}
	}
	return m, nil
}

// PartitionKey keeps a campaign's metadata and activity together.
func (m ActivityMember) PartitionKey() string { return "c:" + m.CampaignID }

// Campaign is the part of a /3.0/campaigns object the pipeline uses.
type Campaign struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	SendTime   string `json:"send_time"` // empty for drafts
	Recipients struct {
		ListID string `json:"list_id"`
	} `json:"recipients"`
	Settings struct {
		Title       string `json:"title"`
		SubjectLine string `json:"subject_line"`
	} `json:"settings"`
}

// ParseCampaign parses one campaign object.
func ParseCampaign(raw []byte) (Campaign, error) {
	var c Campaign
	if err := json.Unmarshal(raw, &c); err != nil {
		return Campaign{}, malformed("campaign: %v", err)
	}
	if c.ID == "" {
		return Campaign{}, malformed("campaign: missing id")
	}
	return c, nil
}

// PartitionKey keeps a campaign's metadata and activity together.
func (c Campaign) PartitionKey() string { return "c:" + c.ID }
