package mapping_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapping"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

const (
	campaignID = "b3f0a9c1d2"
	listID     = "7c1e5d2a90"
)

// withDefaults returns a source with the defaults applied to a file entry.
func withDefaults(t testing.TB, s source.Source) source.Source {
	t.Helper()
	ss, err := source.New(s)
	if err != nil {
		t.Fatalf("source.New(%+v): %v", s, err)
	}
	got, _ := ss.Get(s.ID)
	return got
}

func acme(t testing.TB) source.Source {
	return withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1"})
}

func acmeWithSends(t testing.TB) source.Source {
	return withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1", Events: []string{"open", "click", "bounce", "sent"}})
}

var lineage = events.Lineage{
	Topic: "mailchimp.raw", Partition: 3, Offset: 42, Kind: "test",
	RequestID: "req-1", ReceivedAt: time.Date(2026, 10, 5, 8, 0, 0, 0, time.UTC),
}

// emailKey is sha256 of the trimmed, lowercased email, computed here
// independently of events.EmailKey.
func emailKey(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// ev builds an expected event for the acme source.
func ev(name, email string, when time.Time) events.Event {
	return events.Event{
		SourceID: "acme",
		AppID:    "app1",
		Identity: strings.ToLower(strings.TrimSpace(email)),
		EmailKey: emailKey(email),
		Name:     name,
		Time:     when,
		Lineage:  lineage,
	}
}

// ignoreID leaves the event id to the id-specific tests below: its exact
// derivation is not part of the mapping contract, its properties are.
var ignoreID = cmpopts.IgnoreFields(events.Event{}, "ID")

func mapOK(t *testing.T, src source.Source, kind string, raw []byte) mapping.Result {
	t.Helper()
	res, err := mapping.Map(src, kind, raw, lineage)
	if err != nil {
		t.Fatalf("Map(%s) error = %v", kind, err)
	}
	// MapAppend maps the same onto a shared array, past what it holds.
	before := events.Event{ID: "earlier", Name: "kept"}
	for _, room := range []int{0, 1, 8} { // reallocating, and in place
		evs := append(make([]events.Event, 0, 1+room), before)
		got, grown, err := mapping.MapAppend(evs, &src, kind, raw, lineage)
		if err != nil {
			t.Fatalf("MapAppend(%s) error = %v", kind, err)
		}
		if diff := cmp.Diff(res, got); diff != "" {
			t.Errorf("MapAppend(%s, room %d) differs from Map (-Map +MapAppend):\n%s", kind, room, diff)
		}
		if want := append([]events.Event{before}, res.Events...); !cmp.Equal(grown, want) {
			t.Errorf("MapAppend(%s, room %d) grew the array to %d events, want the earlier one and the result's %d", kind, room, len(grown), len(res.Events))
		}
		if len(got.Events) > 0 && cap(got.Events) != len(got.Events) {
			t.Errorf("MapAppend(%s): result's events have room past them (cap %d, len %d): a later append would share it", kind, cap(got.Events), len(got.Events))
		}
	}
	return res
}

func checkIDs(t *testing.T, evs []events.Event) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range evs {
		if len(e.ID) != 32 || strings.Trim(e.ID, "0123456789abcdef") != "" {
			t.Errorf("event %s at %v: id %q is not 32 hex digits", e.Name, e.Time, e.ID)
		}
		if seen[e.ID] {
			t.Errorf("event %s at %v: duplicate id %q within one payload", e.Name, e.Time, e.ID)
		}
		seen[e.ID] = true
	}
}

func TestMapEmailActivity(t *testing.T) {
	members := fixtures.ActivityMembers()
	want := [][]events.Event{
		{
			func() events.Event {
				e := ev(events.NameBounce, "Priya.Raman@Example.com", at("2026-10-02T14:20:58Z"))
				e.CampaignID, e.ListID, e.BounceType = campaignID, listID, "hard"
				return e
			}(),
		},
		{
			func() events.Event {
				e := ev(events.NameOpen, "jordan.lee@example.com", at("2026-10-02T15:02:11Z"))
				e.CampaignID, e.ListID, e.IP = campaignID, listID, "192.0.2.44"
				return e
			}(),
			func() events.Event {
				e := ev(events.NameOpen, "jordan.lee@example.com", at("2026-10-02T19:45:00Z"))
				e.CampaignID, e.ListID, e.IP = campaignID, listID, "192.0.2.45"
				return e
			}(),
			func() events.Event {
				e := ev(events.NameClick, "jordan.lee@example.com", at("2026-10-02T15:02:40Z"))
				e.CampaignID, e.ListID, e.IP = campaignID, listID, "192.0.2.44"
				e.URL = "https://shop.example/october?utm_source=mailchimp&utm_campaign=oct"
				return e
			}(),
		},
		{
			func() events.Event {
				e := ev(events.NameOpen, "mei.chen@example.com", at("2026-10-02T16:10:05Z"))
				e.CampaignID, e.ListID, e.IP = campaignID, listID, "203.0.113.9"
				return e
			}(),
		},
		{
			func() events.Event {
				e := ev(events.NameBounce, "full.box@example.com", at("2026-10-02T14:21:30Z"))
				e.CampaignID, e.ListID, e.BounceType = campaignID, listID, "soft"
				return e
			}(),
		},
	}
	if len(members) != len(want) {
		t.Fatalf("fixtures hold %d members, want %d", len(members), len(want))
	}
	var all []events.Event
	for i, raw := range members {
		res := mapOK(t, acme(t), mailchimp.KindEmailActivity, raw)
		if res.Campaign != nil {
			t.Errorf("member %d: Campaign = %+v, want nil", i, res.Campaign)
		}
		if diff := cmp.Diff(want[i], res.Events, ignoreID); diff != "" {
			t.Errorf("member %d mismatch (-want +got):\n%s", i, diff)
		}
		all = append(all, res.Events...)
	}
	checkIDs(t, all)
	// The sends-enabled source maps activity the same way.
	for i, raw := range members {
		res := mapOK(t, acmeWithSends(t), mailchimp.KindEmailActivity, raw)
		if diff := cmp.Diff(want[i], res.Events, ignoreID); diff != "" {
			t.Errorf("sends source, member %d mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func TestMapListWebhooks(t *testing.T) {
	hardBounce := ev(events.NameBounce, "Priya.Raman@Example.com", at("2026-10-02T14:21:09Z"))
	hardBounce.CampaignID, hardBounce.ListID, hardBounce.BounceType = campaignID, listID, "hard"
	tests := map[string]mapping.Result{
		"campaign":      {Campaign: &mapping.Campaign{ID: campaignID, Title: "October product update", ListID: listID, Fallback: true}},
		"cleaned-abuse": {}, // a spam complaint, not a bounce
		"cleaned-hard":  {Events: []events.Event{hardBounce}},
		"profile":       {},
		"subscribe":     {},
		"unsubscribe":   {},
		"upemail": {EmailChange: &mapping.EmailChange{Old: "new.reader@example.org", New: "ana.silva@example.org",
			At: at("2026-10-04T09:30:00Z")}},
	}
	hooks := fixtures.ListWebhooks()
	for name := range hooks {
		if _, ok := tests[name]; !ok {
			t.Errorf("fixture list-webhooks/%s.form has no expectation here", name)
		}
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			for _, src := range []source.Source{acme(t), acmeWithSends(t)} {
				got := mapOK(t, src, mailchimp.KindListWebhook, hooks[name])
				if diff := cmp.Diff(want, got, ignoreID, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Map() mismatch (-want +got):\n%s", diff)
				}
				checkIDs(t, got.Events)
			}
		})
	}
}

func TestMapOneBouncePerCampaignAndAddress(t *testing.T) {
	src := acme(t)
	activity := mapOK(t, src, mailchimp.KindEmailActivity, fixtures.ActivityMembers()[0])
	cleaned := mapOK(t, src, mailchimp.KindListWebhook, fixtures.ListWebhooks()["cleaned-hard"])
	if len(activity.Events) != 1 || len(cleaned.Events) != 1 {
		t.Fatalf("want one bounce from each input, got %d and %d", len(activity.Events), len(cleaned.Events))
	}
	a, c := activity.Events[0], cleaned.Events[0]
	if a.Name != events.NameBounce || c.Name != events.NameBounce {
		t.Fatalf("names %q and %q, want %q", a.Name, c.Name, events.NameBounce)
	}
	if a.ID != c.ID {
		t.Errorf("activity bounce id %s != list webhook bounce id %s: Heap would get two bounces for Priya", a.ID, c.ID)
	}
	// Whoever reports first wins; the rest (identity, key) agree too.
	if a.Identity != c.Identity || a.EmailKey != c.EmailKey || string(a.Key()) != string(c.Key()) {
		t.Errorf("the two bounces disagree on identity or key: %+v vs %+v", a, c)
	}

	// A bounce in another campaign, or for another address, is another event.
	other := strings.Replace(string(fixtures.ListWebhooks()["cleaned-hard"]), campaignID, "a0a0a0a0a0", 1)
	o := mapOK(t, src, mailchimp.KindListWebhook, []byte(other))
	if len(o.Events) != 1 || o.Events[0].ID == a.ID {
		t.Errorf("bounce in another campaign shares the id %s", a.ID)
	}
	soft := mapOK(t, src, mailchimp.KindEmailActivity, fixtures.ActivityMembers()[3])
	if soft.Events[0].ID == a.ID {
		t.Errorf("bounce for another address shares the id %s", a.ID)
	}
}

func TestMapMandrill(t *testing.T) {
	units, err := mailchimp.SplitMandrillBatch(string(fixtures.Read("mandrill/events.json")))
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[string][]byte{}
	for _, u := range units {
		e, err := mailchimp.ParseMandrillEvent(u)
		if err != nil {
			t.Fatal(err)
		}
		byEvent[e.Event] = u
	}
	const shipping = "Your order #88213 has shipped"
	mandrill := func(name, email string, ts int64, tags, title string) events.Event {
		e := ev(name, email, time.Unix(ts, 0).UTC())
		e.CampaignID, e.CampaignTitle = tags, title
		return e
	}
	open := mandrill(events.NameOpen, "jordan.lee@example.com", 1759413912, "shipping", shipping)
	open.IP = "192.0.2.44"
	click := mandrill(events.NameClick, "jordan.lee@example.com", 1759413940, "shipping", shipping)
	click.IP, click.URL = "192.0.2.44", "https://shop.example/track/88213"
	hard := mandrill(events.NameBounce, "nobody@invalid.example", 1759414100, "auth", "Reset your password")
	hard.BounceType = "hard"
	soft := mandrill(events.NameBounce, "full.box@example.com", 1759414200, "digest", "Weekly digest")
	soft.BounceType = "soft"
	sent := mandrill(events.NameSent, "jordan.lee@example.com", 1759413600, "shipping", shipping)
	sent.Subject, sent.Tags = shipping, []string{"shipping"}

	tests := []struct {
		event          string
		want, wantSend []events.Event // default source, sends-enabled source
	}{
		{event: "send", want: nil, wantSend: []events.Event{sent}},
		{event: "open", want: []events.Event{open}, wantSend: []events.Event{open}},
		{event: "click", want: []events.Event{click}, wantSend: []events.Event{click}},
		{event: "hard_bounce", want: []events.Event{hard}, wantSend: []events.Event{hard}},
		{event: "soft_bounce", want: []events.Event{soft}, wantSend: []events.Event{soft}},
		{event: "deferral"},
		{event: "spam"},
		{event: "unsub"},
		{event: "reject"},
	}
	if len(tests) != len(units) {
		t.Fatalf("fixture has %d events, the table %d", len(units), len(tests))
	}
	var all []events.Event
	for _, tt := range tests {
		t.Run(tt.event, func(t *testing.T) {
			raw, ok := byEvent[tt.event]
			if !ok {
				t.Fatalf("no %s event in the fixture", tt.event)
			}
			got := mapOK(t, acme(t), mailchimp.KindMandrillEvent, raw)
			if got.Campaign != nil {
				t.Errorf("Campaign = %+v, want nil", got.Campaign)
			}
			if diff := cmp.Diff(tt.want, got.Events, ignoreID); diff != "" {
				t.Errorf("default source mismatch (-want +got):\n%s", diff)
			}
			gotSend := mapOK(t, acmeWithSends(t), mailchimp.KindMandrillEvent, raw)
			if diff := cmp.Diff(tt.wantSend, gotSend.Events, ignoreID); diff != "" {
				t.Errorf("sends source mismatch (-want +got):\n%s", diff)
			}
			all = append(all, gotSend.Events...)
		})
	}
	checkIDs(t, all)
}

func TestMapMandrillCampaignFields(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		wantID    string
		wantTitle string
	}{
		{
			name:   "several tags joined with commas",
			raw:    `{"event":"open","ts":1759413912,"_id":"m1","ip":"198.51.100.7","msg":{"_id":"m1","email":"A@Example.com","subject":"Hello","tags":["welcome","onboarding","v2"]}}`,
			wantID: "welcome,onboarding,v2", wantTitle: "Hello",
		},
		{
			name:   "no tags, no subject",
			raw:    `{"event":"click","ts":1759413912,"_id":"m2","url":"https://x.example/","msg":{"_id":"m2","email":"a@example.com"}}`,
			wantID: "", wantTitle: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapOK(t, acme(t), mailchimp.KindMandrillEvent, []byte(tt.raw))
			if len(got.Events) != 1 {
				t.Fatalf("got %d events, want 1", len(got.Events))
			}
			e := got.Events[0]
			if e.CampaignID != tt.wantID || e.CampaignTitle != tt.wantTitle {
				t.Errorf("Campaign ID, Title = %q, %q; want %q, %q", e.CampaignID, e.CampaignTitle, tt.wantID, tt.wantTitle)
			}
			if e.Identity != "a@example.com" {
				t.Errorf("Identity = %q, want the lowercased email", e.Identity)
			}
		})
	}
}

func TestMapSyncEventProducesNothing(t *testing.T) {
	raw := `{"type":"blacklist","action":"add","reject":{"email":"x@example.com"},"ts":1759414700}`
	got := mapOK(t, acmeWithSends(t), mailchimp.KindMandrillEvent, []byte(raw))
	if diff := cmp.Diff(mapping.Result{}, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("sync event mapped to something:\n%s", diff)
	}
}

func TestMapCampaigns(t *testing.T) {
	want := []mapping.Campaign{
		{ID: "b3f0a9c1d2", Title: "October product update", ListID: listID, Type: "regular"},
		{ID: "c4e1b0d2e3", Title: "Plain text notice", ListID: listID, Type: "plaintext"},
		{ID: "d5f2c1e3f4", Title: "Subject line test (multivariate)", ListID: listID, Type: "variate"},
		{ID: "e6a3d2f4a5", Title: "Blog digest", ListID: listID, Type: "rss"},
		{ID: "f7b4e3a5b6", Title: "Draft for November", ListID: listID, Type: "regular"},
	}
	campaigns := fixtures.Campaigns()
	if len(campaigns) != len(want) {
		t.Fatalf("fixture holds %d campaigns, want %d", len(campaigns), len(want))
	}
	for i, raw := range campaigns {
		got := mapOK(t, acme(t), mailchimp.KindCampaign, raw)
		if len(got.Events) != 0 {
			t.Errorf("campaign %s produced events: %+v", want[i].ID, got.Events)
		}
		if got.Campaign == nil {
			t.Fatalf("campaign %s: no metadata", want[i].ID)
		}
		if diff := cmp.Diff(want[i], *got.Campaign); diff != "" {
			t.Errorf("campaign %s mismatch (-want +got):\n%s", want[i].ID, diff)
		}
	}
}

func TestMapIDs(t *testing.T) {
	activity := fixtures.ActivityMembers()[1] // jordan: two opens and a click
	mapIDs := func(src source.Source, lin events.Lineage) []string {
		t.Helper()
		res, err := mapping.Map(src, mailchimp.KindEmailActivity, activity, lin)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range res.Events {
			ids = append(ids, e.ID)
		}
		return ids
	}
	base := mapIDs(acme(t), lineage)
	if len(base) != 3 {
		t.Fatalf("want 3 events, got %d", len(base))
	}
	otherLineage := events.Lineage{Topic: "mailchimp.raw", Partition: 0, Offset: 7, Kind: "backfill", RequestID: "req-2", ReceivedAt: time.Now()}

	tests := []struct {
		name  string
		ids   []string
		equal bool
	}{
		{name: "mapping twice", ids: mapIDs(acme(t), lineage), equal: true},
		{name: "different lineage (replay, backfill)", ids: mapIDs(acme(t), otherLineage), equal: true},
		{name: "different source id, same app", ids: mapIDs(withDefaults(t, source.Source{ID: "acme2", HeapAppID: "app1"}), lineage), equal: true},
		{name: "email_case preserve", ids: mapIDs(withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1", EmailCase: "preserve"}), lineage), equal: true},
		{name: "different app id", ids: mapIDs(withDefaults(t, source.Source{ID: "acme", HeapAppID: "app2"}), lineage), equal: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.ids) != len(base) {
				t.Fatalf("got %d ids, want %d", len(tt.ids), len(base))
			}
			for i := range base {
				if (tt.ids[i] == base[i]) != tt.equal {
					t.Errorf("event %d: id %s vs %s, want equal=%v", i, tt.ids[i], base[i], tt.equal)
				}
			}
		})
	}

	// The address's case and surrounding space do not change ids.
	upper := strings.Replace(string(activity), "jordan.lee@example.com", "  JORDAN.Lee@Example.COM ", 1)
	res, err := mapping.Map(acme(t), mailchimp.KindEmailActivity, []byte(upper), lineage)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res.Events {
		if e.ID != base[i] {
			t.Errorf("event %d: id changes with the email's case: %s vs %s", i, e.ID, base[i])
		}
	}
}

func TestMapEmailCaseAndJoinKey(t *testing.T) {
	raw := fixtures.ListWebhooks()["cleaned-hard"] // Priya.Raman@Example.com
	lower := mapOK(t, acme(t), mailchimp.KindListWebhook, raw).Events
	preserve := mapOK(t, withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1", EmailCase: "preserve"}), mailchimp.KindListWebhook, raw).Events
	custom := mapOK(t, withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1", EmailProperty: "email"}), mailchimp.KindListWebhook, raw).Events
	if len(lower) != 1 || len(preserve) != 1 || len(custom) != 1 {
		t.Fatalf("want one event each, got %d, %d, %d", len(lower), len(preserve), len(custom))
	}
	tests := []struct {
		name         string
		e            events.Event
		wantIdentity string
	}{
		{name: "lower", e: lower[0], wantIdentity: "priya.raman@example.com"},
		{name: "preserve keeps the case", e: preserve[0], wantIdentity: "Priya.Raman@Example.com"},
		{name: "custom email property leaves identity for the mapper", e: custom[0], wantIdentity: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.e.Identity != tt.wantIdentity {
				t.Errorf("Identity = %q, want %q", tt.e.Identity, tt.wantIdentity)
			}
			if want := emailKey("priya.raman@example.com"); tt.e.EmailKey != want {
				t.Errorf("EmailKey = %q, want the case-insensitive %q", tt.e.EmailKey, want)
			}
			if tt.e.ID != lower[0].ID {
				t.Errorf("ID = %q, want the case-insensitive %q", tt.e.ID, lower[0].ID)
			}
		})
	}
}

func TestMapSourceEvents(t *testing.T) {
	// A source that opts out of a kind gets none of it.
	activity := fixtures.ActivityMembers()
	tests := []struct {
		name        string
		events      []string
		want        map[string]int // from the activity pages
		wantCleaned int            // from cleaned-hard
	}{
		{name: "opens only", events: []string{"open"}, want: map[string]int{events.NameOpen: 3}},
		{name: "clicks only", events: []string{"click"}, want: map[string]int{events.NameClick: 1}},
		{name: "bounces only", events: []string{"bounce"}, want: map[string]int{events.NameBounce: 2}, wantCleaned: 1},
		{name: "sent only", events: []string{"sent"}, want: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := withDefaults(t, source.Source{ID: "acme", HeapAppID: "app1", Events: tt.events})
			got := map[string]int{}
			for _, raw := range activity {
				for _, e := range mapOK(t, src, mailchimp.KindEmailActivity, raw).Events {
					got[e.Name]++
				}
			}
			if res := mapOK(t, src, mailchimp.KindListWebhook, fixtures.ListWebhooks()["cleaned-hard"]); len(res.Events) != tt.wantCleaned {
				t.Errorf("cleaned-hard: %d events for events=%v", len(res.Events), tt.events)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("event counts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMapMalformed(t *testing.T) {
	tests := []struct {
		name string
		kind string
		raw  string
	}{
		{name: "unknown kind", kind: "sms", raw: "{}"},
		{name: "empty kind", kind: "", raw: string(fixtures.ListWebhooks()["cleaned-hard"])},
		{name: "list webhook body as a mandrill event", kind: mailchimp.KindMandrillEvent, raw: string(fixtures.ListWebhooks()["cleaned-hard"])},
		{name: "list webhook without type", kind: mailchimp.KindListWebhook, raw: "fired_at=2026-10-02+14%3A21%3A09&data%5Bemail%5D=a%40example.com"},
		{name: "list webhook bad escape", kind: mailchimp.KindListWebhook, raw: "type=cleaned&data%5Bemail%5D=%ZZ"},
		{name: "mandrill batch instead of one event", kind: mailchimp.KindMandrillEvent, raw: string(fixtures.Read("mandrill/events.json"))},
		{name: "mandrill event without email", kind: mailchimp.KindMandrillEvent, raw: `{"event":"open","ts":1759413912,"_id":"m","msg":{}}`},
		{name: "activity member without campaign", kind: mailchimp.KindEmailActivity, raw: `{"email_address":"a@example.com","activity":[]}`},
		{name: "activity page instead of a member", kind: mailchimp.KindEmailActivity, raw: string(fixtures.Read("marketing-api/email-activity-b3f0a9c1d2-offset3-count3.json"))},
		{name: "campaign without id", kind: mailchimp.KindCampaign, raw: `{"settings":{"title":"t"}}`},
		{name: "campaign not json", kind: mailchimp.KindCampaign, raw: "<html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mapping.Map(acme(t), tt.kind, []byte(tt.raw), lineage)
			if err == nil {
				t.Fatalf("Map() = %+v, want error", got)
			}
			src := acme(t)
			evs := make([]events.Event, 1, 4)
			if _, grown, err := mapping.MapAppend(evs, &src, tt.kind, []byte(tt.raw), lineage); err == nil || len(grown) != 1 {
				t.Errorf("MapAppend() = %d events, error %v; want the 1 given back and an error", len(grown), err)
			}
			if !errors.Is(err, mailchimp.ErrMalformed) {
				t.Errorf("error %v does not wrap mailchimp.ErrMalformed", err)
			}
			if diff := cmp.Diff(mapping.Result{}, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Map() returned a partial result with its error:\n%s", diff)
			}
		})
	}
}
