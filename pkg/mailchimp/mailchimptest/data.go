package mailchimptest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

// Campaign types and statuses as the API names them.
const (
	TypeRegular   = "regular"
	TypePlaintext = "plaintext"
	TypeAbsplit   = "absplit"
	TypeRSS       = "rss"
	TypeVariate   = "variate"

	StatusSave     = "save"
	StatusPaused   = "paused"
	StatusSchedule = "schedule"
	StatusSending  = "sending"
	StatusSent     = "sent"
)

// Activity actions and bounce types.
const (
	ActionOpen   = "open"
	ActionClick  = "click"
	ActionBounce = "bounce"
	BounceHard   = "hard"
	BounceSoft   = "soft"
)

var (
	campaignTypes    = []string{TypeRegular, TypePlaintext, TypeAbsplit, TypeRSS, TypeVariate}
	campaignStatuses = []string{StatusSave, StatusPaused, StatusSchedule, StatusSending, StatusSent}
)

// Campaign is one campaign as the stand-in keeps it. AddCampaign fills the
// zero fields with defaults (see there).
type Campaign struct {
	ID             string
	WebID          int
	Type           string    // regular|plaintext|absplit|rss|variate
	Status         string    // save|paused|schedule|sending|sent
	CreateTime     time.Time // UTC
	SendTime       time.Time // zero for campaigns not sent
	ListID         string
	ListName       string
	ListInactive   bool // list_is_active false: the audience was deleted
	Title          string
	SubjectLine    string
	FromName       string
	ReplyTo        string
	EmailsSent     int // 0: the number of members with activity, once sent
	RecipientCount int // 0: EmailsSent or the number of members
}

// Activity is one action of a member.
type Activity struct {
	Action    string // open|click|bounce
	Type      string // hard|soft, bounces only
	Timestamp time.Time
	URL       string // clicks only
	IP        string
}

// Member is one recipient's activity on a campaign, actions in the order added.
type Member struct {
	CampaignID   string
	EmailAddress string // as first added
	EmailID      string // md5 hex of the lowercased address
	Activity     []Activity
}

// report is a campaign's members keyed by lowercased address.
type report struct {
	members map[string]*Member
	sorted  []*Member // by lowercased address; nil when stale
}

func newReport() *report { return &report{members: map[string]*Member{}} }

func (rp *report) add(campaignID, email string, acts []Activity) {
	key := strings.ToLower(strings.TrimSpace(email))
	m := rp.members[key]
	if m == nil {
		m = &Member{CampaignID: campaignID, EmailAddress: email, EmailID: EmailID(email)}
		rp.members[key] = m
		rp.sorted = nil
	}
	for _, a := range acts {
		a.Timestamp = a.Timestamp.UTC().Truncate(time.Second)
		m.Activity = append(m.Activity, a)
	}
}

// order returns the members sorted by lowercased address, the order pages are served in.
func (rp *report) order() []*Member {
	if rp.sorted == nil {
		rp.sorted = make([]*Member, 0, len(rp.members))
		for _, m := range rp.members {
			rp.sorted = append(rp.sorted, m)
		}
		slices.SortFunc(rp.sorted, func(a, b *Member) int {
			return strings.Compare(strings.ToLower(a.EmailAddress), strings.ToLower(b.EmailAddress))
		})
	}
	return rp.sorted
}

// EmailID is Mailchimp's member id: md5 hex of the lowercased address.
func EmailID(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// AddCampaign adds or replaces a campaign. Defaults for zero fields: Type
// regular, Status sent, CreateTime a day before SendTime, WebID and ListID
// derived from the id, ListName "Customers", Title and SubjectLine from the id.
// Times are kept in UTC to the second.
func (s *Service) AddCampaign(c Campaign) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addCampaign(c)
}

func (s *Service) addCampaign(c Campaign) {
	if c.ID == "" {
		panic("mailchimptest: campaign without an id")
	}
	if c.Type == "" {
		c.Type = TypeRegular
	}
	if c.Status == "" {
		c.Status = StatusSent
	}
	c.SendTime = c.SendTime.UTC().Truncate(time.Second)
	if c.CreateTime.IsZero() {
		if c.SendTime.IsZero() {
			c.CreateTime = time.Date(2026, 9, 30, 10, 0, 0, 0, time.UTC)
		} else {
			c.CreateTime = c.SendTime.Add(-24 * time.Hour)
		}
	}
	c.CreateTime = c.CreateTime.UTC().Truncate(time.Second)
	if c.WebID == 0 {
		h := fnv.New32a()
		h.Write([]byte(c.ID))
		c.WebID = int(h.Sum32()%90000000) + 10000000
	}
	if c.ListID == "" {
		c.ListID = EmailID("list:" + c.ID)[:10]
	}
	if c.ListName == "" {
		c.ListName = "Customers"
	}
	if c.Title == "" {
		c.Title = "Campaign " + c.ID
	}
	if c.SubjectLine == "" {
		c.SubjectLine = c.Title + " (subject)"
	}
	if c.FromName == "" {
		c.FromName = "Example Shop"
	}
	if c.ReplyTo == "" {
		c.ReplyTo = "hello@shop.example"
	}
	if _, ok := s.campaigns[c.ID]; !ok {
		s.order = append(s.order, c.ID)
	}
	s.campaigns[c.ID] = &c
}

// DeleteCampaign removes a campaign and its activity; the API answers 404 for it afterwards.
func (s *Service) DeleteCampaign(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.campaigns[id]; !ok {
		return
	}
	delete(s.campaigns, id)
	delete(s.activity, id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
}

// AddActivity appends actions to a member of a campaign (created on first use,
// keyed by the lowercased address; the address is shown as first given). The
// campaign need not exist yet, but the report is served only once it does and
// has been sent.
func (s *Service) AddActivity(campaignID, email string, acts ...Activity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.report(campaignID).add(campaignID, email, acts)
}

func (s *Service) report(campaignID string) *report {
	rp := s.activity[campaignID]
	if rp == nil {
		rp = newReport()
		s.activity[campaignID] = rp
	}
	return rp
}

// Campaigns returns the campaigns in the order they were added.
func (s *Service) Campaigns() []Campaign {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Campaign, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.campaigns[id])
	}
	return out
}

// Activity returns a campaign's members in the order the API serves them
// (lowercased address), each with all its actions; nil for an unknown campaign.
func (s *Service) Activity(campaignID string) []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.activity[campaignID]
	if rp == nil {
		return nil
	}
	ms := rp.order()
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = *m
		out[i].Activity = slices.Clone(m.Activity)
	}
	return out
}

// Generate adds a reproducible data set: campaigns sent six hours apart from
// 2026-09-01T00:00:00Z (types cycling regular, plaintext, absplit, rss,
// regular, variate; with two or more campaigns the last is a draft: status
// save, no send time, no activity), each sent campaign with membersPerCampaign
// members (the same addresses in every campaign, every tenth one in mixed case)
// and exactly actionsPerMember actions per member: opens and clicks at
// increasing times within three days of the send, and for about one member in
// fifty a bounce first (one in three of them hard). The same arguments give the
// same data. It returns the campaigns added.
func (s *Service) Generate(seed int64, campaigns, membersPerCampaign, actionsPerMember int) []Campaign {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d61696c6368696d))
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	types := []string{TypeRegular, TypePlaintext, TypeAbsplit, TypeRSS, TypeRegular, TypeVariate}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Campaign
	for i := range campaigns {
		at := base.Add(time.Duration(i) * 6 * time.Hour)
		c := Campaign{
			ID:          EmailID(fmt.Sprintf("campaign:%d:%d", seed, i))[:10],
			Type:        types[i%len(types)],
			Status:      StatusSent,
			CreateTime:  at.Add(-24 * time.Hour),
			SendTime:    at,
			ListID:      EmailID(fmt.Sprintf("list:%d", seed))[:10],
			Title:       fmt.Sprintf("Generated campaign %d", i+1),
			SubjectLine: fmt.Sprintf("Generated campaign %d (subject)", i+1),
		}
		if campaigns >= 2 && i == campaigns-1 {
			c.Status, c.SendTime, c.Title, c.SubjectLine = StatusSave, time.Time{}, "Generated draft", "Generated draft (subject)"
		}
		s.addCampaign(c)
		out = append(out, *s.campaigns[c.ID])
		if c.Status != StatusSent {
			continue
		}
		rp := s.report(c.ID)
		acts := make([]Activity, 0, actionsPerMember)
		for j := range membersPerCampaign {
			email := fmt.Sprintf("member%07d.s%d@example.com", j, seed)
			if j%10 == 9 {
				email = fmt.Sprintf("Member%07d.S%d@Example.com", j, seed)
			}
			ip := fmt.Sprintf("198.51.100.%d", 1+j%254)
			t := at.Add(time.Duration(rng.IntN(72*3600)) * time.Second)
			bounce := rng.IntN(50) == 0
			acts = acts[:0]
			for k := range actionsPerMember {
				if k > 0 {
					t = t.Add(time.Duration(1+rng.IntN(3600)) * time.Second)
				}
				switch {
				case k == 0 && bounce:
					typ := BounceSoft
					if rng.IntN(3) == 0 {
						typ = BounceHard
					}
					acts = append(acts, Activity{Action: ActionBounce, Type: typ, Timestamp: t})
				case k == 0 || rng.IntN(3) != 0:
					acts = append(acts, Activity{Action: ActionOpen, Timestamp: t, IP: ip})
				default:
					acts = append(acts, Activity{Action: ActionClick, Timestamp: t, IP: ip,
						URL: fmt.Sprintf("https://shop.example/p/%d?utm_source=mailchimp&utm_campaign=%s", rng.IntN(20), c.ID)})
				}
			}
			rp.add(c.ID, email, acts)
		}
	}
	return out
}

// LoadFixtures adds the campaigns of fixtures/marketing-api/campaigns.json and
// the members of the two email-activity pages of campaign b3f0a9c1d2.
func (s *Service) LoadFixtures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, raw := range fixtures.Campaigns() {
		var cj campaignJSON
		if err := json.Unmarshal(raw, &cj); err != nil {
			panic(fmt.Sprintf("mailchimptest: fixture campaign: %v", err))
		}
		c := Campaign{
			ID: cj.ID, WebID: cj.WebID, Type: cj.Type, Status: cj.Status, EmailsSent: cj.EmailsSent, RecipientCount: cj.Recipients.RecipientCount,
			ListID: cj.Recipients.ListID, ListName: cj.Recipients.ListName, ListInactive: !cj.Recipients.ListIsActive,
			Title: cj.Settings.Title, SubjectLine: cj.Settings.SubjectLine, FromName: cj.Settings.FromName, ReplyTo: cj.Settings.ReplyTo,
		}
		c.CreateTime = mustTime(cj.CreateTime)
		c.SendTime = mustTime(cj.SendTime)
		s.addCampaign(c)
	}
	for _, raw := range fixtures.ActivityMembers() {
		var mj memberJSON
		if err := json.Unmarshal(raw, &mj); err != nil {
			panic(fmt.Sprintf("mailchimptest: fixture member: %v", err))
		}
		acts := make([]Activity, len(mj.Activity))
		for i, a := range mj.Activity {
			acts[i] = Activity{Action: a.Action, Type: a.Type, Timestamp: mustTime(a.Timestamp), URL: a.URL, IP: a.IP}
		}
		s.report(mj.CampaignID).add(mj.CampaignID, mj.EmailAddress, acts)
	}
}

func mustTime(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := parseTime(v)
	if err != nil {
		panic(fmt.Sprintf("mailchimptest: fixture time %q: %v", v, err))
	}
	return t
}

// Wire shapes, field order as Mailchimp sends them.

type campaignJSON struct {
	ID          string `json:"id"`
	WebID       int    `json:"web_id"`
	Type        string `json:"type"`
	CreateTime  string `json:"create_time"`
	ArchiveURL  string `json:"archive_url"`
	Status      string `json:"status"`
	EmailsSent  int    `json:"emails_sent"`
	SendTime    string `json:"send_time"`
	ContentType string `json:"content_type"`
	Recipients  struct {
		ListID         string `json:"list_id"`
		ListIsActive   bool   `json:"list_is_active"`
		ListName       string `json:"list_name"`
		RecipientCount int    `json:"recipient_count"`
	} `json:"recipients"`
	Settings struct {
		SubjectLine string `json:"subject_line"`
		Title       string `json:"title"`
		FromName    string `json:"from_name"`
		ReplyTo     string `json:"reply_to"`
	} `json:"settings"`
	Links []any `json:"_links"`
}

type activityJSON struct {
	Action    string `json:"action"`
	Type      string `json:"type,omitempty"`
	Timestamp string `json:"timestamp"`
	IP        string `json:"ip"`
	URL       string `json:"url,omitempty"`
}

type memberJSON struct {
	CampaignID   string         `json:"campaign_id"`
	ListID       string         `json:"list_id"`
	ListIsActive bool           `json:"list_is_active"`
	EmailID      string         `json:"email_id"`
	EmailAddress string         `json:"email_address"`
	Activity     []activityJSON `json:"activity"`
	Links        []any          `json:"_links"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// parseTime reads ISO 8601 as Mailchimp accepts it: with a zone, or without
// one (UTC), or a bare date.
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time", v)
}

// campaignWire renders c; members is the size of its report.
func campaignWire(c *Campaign, members int) campaignJSON {
	var cj campaignJSON
	cj.ID, cj.WebID, cj.Type, cj.Status = c.ID, c.WebID, c.Type, c.Status
	cj.CreateTime, cj.SendTime = formatTime(c.CreateTime), formatTime(c.SendTime)
	cj.ArchiveURL = "https://mailchi.mp/example/" + c.ID
	cj.ContentType = "template"
	cj.EmailsSent = c.EmailsSent
	if cj.EmailsSent == 0 && (c.Status == StatusSent || c.Status == StatusSending) {
		cj.EmailsSent = members
	}
	cj.Recipients.ListID, cj.Recipients.ListName, cj.Recipients.ListIsActive = c.ListID, c.ListName, !c.ListInactive
	cj.Recipients.RecipientCount = c.RecipientCount
	if cj.Recipients.RecipientCount == 0 {
		cj.Recipients.RecipientCount = max(c.EmailsSent, members)
	}
	cj.Settings.SubjectLine, cj.Settings.Title, cj.Settings.FromName, cj.Settings.ReplyTo = c.SubjectLine, c.Title, c.FromName, c.ReplyTo
	cj.Links = []any{}
	return cj
}

// paging reads count (default 10, at most 1000) and offset.
func paging(q url.Values) (count, offset int, problem string) {
	count, offset = DefaultCount, 0
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, fmt.Sprintf("count: %q is not a non-negative integer.", v)
		}
		if n > MaxCount {
			return 0, 0, fmt.Sprintf("count: Must be less than or equal to %d, got %d.", MaxCount, n)
		}
		count = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, fmt.Sprintf("offset: %q is not a non-negative integer.", v)
		}
		offset = n
	}
	return count, offset, ""
}

func timeParam(q url.Values, name string) (time.Time, string) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, ""
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, name + ": " + err.Error() + "."
	}
	return t, ""
}

func window[T any](items []T, offset, count int) []T {
	if offset >= len(items) {
		return items[:0]
	}
	return items[offset:min(len(items), offset+count)]
}

func (s *Service) listCampaigns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	count, offset, problem := paging(q)
	if problem != "" {
		badRequest(w, problem)
		return
	}
	var bounds [4]time.Time
	for i, name := range []string{"since_send_time", "before_send_time", "since_create_time", "before_create_time"} {
		if bounds[i], problem = timeParam(q, name); problem != "" {
			badRequest(w, problem)
			return
		}
	}
	status, typ := q.Get("status"), q.Get("type")
	if status != "" && !slices.Contains(campaignStatuses, status) {
		badRequest(w, fmt.Sprintf("status: %q is not one of %s.", status, strings.Join(campaignStatuses, ", ")))
		return
	}
	if typ != "" && !slices.Contains(campaignTypes, typ) {
		badRequest(w, fmt.Sprintf("type: %q is not one of %s.", typ, strings.Join(campaignTypes, ", ")))
		return
	}
	sortField, sortDir := q.Get("sort_field"), strings.ToUpper(q.Get("sort_dir"))
	if sortField != "" && sortField != "send_time" && sortField != "create_time" {
		badRequest(w, fmt.Sprintf("sort_field: %q is not one of create_time, send_time.", sortField))
		return
	}
	if sortDir != "" && sortDir != "ASC" && sortDir != "DESC" {
		badRequest(w, fmt.Sprintf("sort_dir: %q is not one of ASC, DESC.", q.Get("sort_dir")))
		return
	}

	s.mu.Lock()
	var match []*Campaign
	for _, id := range s.order {
		c := s.campaigns[id]
		switch {
		case status != "" && c.Status != status,
			typ != "" && c.Type != typ,
			!bounds[0].IsZero() && (c.SendTime.IsZero() || c.SendTime.Before(bounds[0])),
			!bounds[1].IsZero() && (c.SendTime.IsZero() || !c.SendTime.Before(bounds[1])),
			!bounds[2].IsZero() && c.CreateTime.Before(bounds[2]),
			!bounds[3].IsZero() && !c.CreateTime.Before(bounds[3]):
			continue
		}
		match = append(match, c)
	}
	if sortField != "" {
		key := func(c *Campaign) time.Time { return c.SendTime }
		if sortField == "create_time" {
			key = func(c *Campaign) time.Time { return c.CreateTime }
		}
		slices.SortStableFunc(match, func(a, b *Campaign) int {
			n := key(a).Compare(key(b))
			if n == 0 {
				n = strings.Compare(a.ID, b.ID)
			}
			if sortDir == "DESC" {
				n = -n
			}
			return n
		})
	}
	page := window(match, offset, count)
	out := make([]campaignJSON, len(page))
	for i, c := range page {
		n := 0
		if rp := s.activity[c.ID]; rp != nil {
			n = len(rp.members)
		}
		out[i] = campaignWire(c, n)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Campaigns  []campaignJSON `json:"campaigns"`
		TotalItems int            `json:"total_items"`
		Links      []any          `json:"_links"`
	}{out, len(match), []any{}})
}

func (s *Service) getCampaign(w http.ResponseWriter, id string) {
	s.mu.Lock()
	c, ok := s.campaigns[id]
	var cj campaignJSON
	if ok {
		n := 0
		if rp := s.activity[id]; rp != nil {
			n = len(rp.members)
		}
		cj = campaignWire(c, n)
	}
	s.mu.Unlock()
	if !ok {
		writeProblem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
		return
	}
	writeJSON(w, http.StatusOK, cj)
}

func (s *Service) emailActivity(w http.ResponseWriter, r *http.Request, campaignID string) {
	q := r.URL.Query()
	count, offset, problem := paging(q)
	if problem != "" {
		badRequest(w, problem)
		return
	}
	since, problem := timeParam(q, "since")
	if problem != "" {
		badRequest(w, problem)
		return
	}
	s.mu.Lock()
	c, ok := s.campaigns[campaignID]
	// A campaign that was never sent has no report.
	if !ok || (c.Status != StatusSent && c.Status != StatusSending) {
		s.mu.Unlock()
		writeProblem(w, http.StatusNotFound, "Resource Not Found", "The requested resource could not be found.")
		return
	}
	var members []*Member
	if rp := s.activity[campaignID]; rp != nil {
		members = rp.order()
	}
	total, out := 0, []memberJSON{}
	for _, m := range members {
		if !since.IsZero() && !slices.ContainsFunc(m.Activity, func(a Activity) bool { return !a.Timestamp.Before(since) }) {
			continue
		}
		total++
		if total <= offset || len(out) >= count {
			continue
		}
		acts := []activityJSON{}
		for _, a := range m.Activity {
			if !since.IsZero() && a.Timestamp.Before(since) {
				continue
			}
			acts = append(acts, activityJSON{Action: a.Action, Type: a.Type, Timestamp: formatTime(a.Timestamp), IP: a.IP, URL: a.URL})
		}
		out = append(out, memberJSON{
			CampaignID: campaignID, ListID: c.ListID, ListIsActive: !c.ListInactive,
			EmailID: m.EmailID, EmailAddress: m.EmailAddress, Activity: acts, Links: []any{},
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Emails     []memberJSON `json:"emails"`
		CampaignID string       `json:"campaign_id"`
		TotalItems int          `json:"total_items"`
		Links      []any        `json:"_links"`
	}{out, campaignID, total, []any{}})
}
