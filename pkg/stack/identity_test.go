package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack/stacktest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// joinKeySources: "acme" joins on a custom property and waits long for
// identities; "brief" waits 2 s, then dead-letters the event as unmatched.
func joinKeySources(t *testing.T, app string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sources.yaml")
	doc := fmt.Sprintf(`sources:
  - id: acme
    heap_app_id: %[1]s
    email_property: email
    webhook_secret: %[2]s
    identity_token: %[3]s
    forward_identities: true
  - id: brief
    heap_app_id: %[1]s-brief
    email_property: email
    webhook_secret: %[2]s
    pending_max_age: 2s
`, app, secret, feedToken)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bounce posts an audience "cleaned" webhook: one Bounce Email for email in
// campaign, fired at the given time.
func bounce(t *testing.T, ingressURL, source, email, campaign string, at time.Time) {
	t.Helper()
	form := url.Values{
		"type": {"cleaned"}, "fired_at": {at.UTC().Format("2006-01-02 15:04:05")},
		"data[email]": {email}, "data[list_id]": {"list1"}, "data[campaign_id]": {campaign}, "data[reason]": {"hard"},
	}
	post(t, ingressURL+"/webhooks/mailchimp/"+source+"/"+secret, []byte(form.Encode()), nil)
}

func upemail(t *testing.T, ingressURL, source, oldEmail, newEmail string, at time.Time) {
	t.Helper()
	form := url.Values{
		"type": {"upemail"}, "fired_at": {at.UTC().Format("2006-01-02 15:04:05")},
		"data[list_id]": {"list1"}, "data[old_email]": {oldEmail}, "data[new_email]": {newEmail},
	}
	post(t, ingressURL+"/webhooks/mailchimp/"+source+"/"+secret, []byte(form.Encode()), nil)
}

const feedToken = "feed-token-0123456789"

// feed records identities through the identity feed, as an application
// pointing its add_user_properties calls at ingress does: Heap's bulk shape.
func feed(t *testing.T, ingressURL, app string, pairs ...string) {
	t.Helper()
	type user struct {
		Identity   string            `json:"identity"`
		Properties map[string]string `json:"properties"`
	}
	body := struct {
		AppID string `json:"app_id"`
		Users []user `json:"users"`
	}{AppID: app}
	for i := 0; i+1 < len(pairs); i += 2 {
		body.Users = append(body.Users, user{Identity: pairs[i+1], Properties: map[string]string{"email": pairs[i], "plan": "pro"}})
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, ingressURL+"/v1/identities", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+feedToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/identities: %d %s", resp.StatusCode, out)
	}
}

// delivered finds the event Heap kept for identity in campaign.
func delivered(sink *heaptest.Sink, ident, campaign string) (heaptest.Accepted, bool) {
	for _, a := range sink.Accepted() {
		if a.Identity == ident && a.Properties["Campaign ID"] == campaign {
			return a, true
		}
	}
	return heaptest.Accepted{}, false
}

func pendingCount(t *testing.T, rdb *redis.Client, app string) int64 {
	t.Helper()
	n, err := rdb.ZCard(context.Background(), "mh:pending:{"+app+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStackLateBinding: a custom email join key, with the identity arriving
// before, after, through an address change, and never; then Redis flushed
// mid-run and rebuilt from Kafka with nothing lost.
func TestStackLateBinding(t *testing.T) {
	testsupport.Integration(t, "runs the whole stack")
	prefix := kafkatest.Prefix(t)
	app := prefix + "app"
	env := stacktest.Env(t, prefix)
	// A Redis of this test's own: it is flushed below.
	rs := redistest.NewServer(t)
	env.RedisURL = rs.URL
	env.SweepInterval = 500 * time.Millisecond
	env.SourcesFile = joinKeySources(t, app)
	info := stacktest.Start(t, env)
	topics := kafka.NewTopics(env.TopicPrefix)
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(rs.URL, "redis://")})
	t.Cleanup(func() { rdb.Close() })
	fired := time.Date(2026, 10, 5, 8, 30, 0, 0, time.UTC)
	wantTime := fired.Format("2006-01-02T15:04:05.000Z")

	check := func(t *testing.T, ident, campaign string) {
		t.Helper()
		var got heaptest.Accepted
		testsupport.WaitFor(t, ident+" in Heap for "+campaign, 60*time.Second, func() bool {
			var ok bool
			got, ok = delivered(info.Sink, ident, campaign)
			return ok
		})
		if got.Timestamp != wantTime || got.Event.Event != "Bounce Email" {
			t.Errorf("%s: got %s at %s, want Bounce Email at its original time %s", ident, got.Event.Event, got.Timestamp, wantTime)
		}
	}

	t.Run("identity before the event", func(t *testing.T) {
		feed(t, info.IngressURL, app, "  Before@Example.com ", "User-Before")
		testsupport.WaitFor(t, "the identity in Redis", 30*time.Second, func() bool {
			v, _ := identity.NewStore(rdb).Resolve(context.Background(), app, []string{identityKey("before@example.com")})
			return len(v) == 1
		})
		bounce(t, info.IngressURL, "acme", "before@EXAMPLE.com", "c-before", fired)
		// Case preserved in the identity, email matched case-insensitively.
		check(t, "User-Before", "c-before")
	})

	t.Run("identity after the event", func(t *testing.T) {
		bounce(t, info.IngressURL, "acme", "after@example.com", "c-after", fired)
		testsupport.WaitFor(t, "the event pending", 30*time.Second, func() bool { return pendingCount(t, rdb, app) == 1 })
		if _, ok := delivered(info.Sink, "User-After", "c-after"); ok {
			t.Fatal("delivered before its identity arrived")
		}
		arrived := time.Now()
		feed(t, info.IngressURL, app, "After@example.com", "User-After")
		check(t, "User-After", "c-after")
		if took := time.Since(arrived); took > time.Minute {
			t.Errorf("released %s after the identity arrived, want within a minute", took)
		}
		testsupport.WaitFor(t, "pending empty", 30*time.Second, func() bool { return pendingCount(t, rdb, app) == 0 })
	})

	t.Run("upemail carries the identity", func(t *testing.T) {
		// Known old address, then the change, then an event for the new one.
		feed(t, info.IngressURL, app, "old@example.com", "User-Old")
		upemail(t, info.IngressURL, "acme", "old@example.com", "New@Example.com", fired)
		bounce(t, info.IngressURL, "acme", "new@example.com", "c-upemail", fired)
		check(t, "User-Old", "c-upemail")
		// The event first, then the change: released by it. Then the old
		// address's identity arriving last still reaches a third address.
		bounce(t, info.IngressURL, "acme", "second@example.com", "c-upemail-2", fired)
		testsupport.WaitFor(t, "the event pending", 30*time.Second, func() bool { return pendingCount(t, rdb, app) == 1 })
		upemail(t, info.IngressURL, "acme", "old@example.com", "second@example.com", fired)
		check(t, "User-Old", "c-upemail-2")
		bounce(t, info.IngressURL, "acme", "third@example.com", "c-upemail-3", fired)
		upemail(t, info.IngressURL, "acme", "late@example.com", "third@example.com", fired)
		feed(t, info.IngressURL, app, "late@example.com", "User-Late")
		check(t, "User-Late", "c-upemail-3")
	})

	t.Run("identity never arrives", func(t *testing.T) {
		bounce(t, info.IngressURL, "brief", "nobody@example.com", "c-never", fired)
		recs := kafkatest.Consume(t, info.Brokers, topics.EventsDLQ, 1, 60*time.Second)
		var unmatched int
		for _, r := range recs {
			if kafka.Header(r, kafka.HeaderSource) == "brief" && strings.HasPrefix(kafka.Header(r, kafka.HeaderReason), "unmatched") {
				unmatched++
			}
		}
		if unmatched != 1 {
			t.Fatalf("%d unmatched dead letters for brief, want 1", unmatched)
		}
		testsupport.WaitFor(t, "brief's pending empty", 30*time.Second, func() bool { return pendingCount(t, rdb, app+"-brief") == 0 })
	})

	t.Run("identity too long", func(t *testing.T) {
		// The feed refuses such an identity; a record written to the topic
		// by other means must still never reach Heap.
		cl, err := kgo.NewClient(kafkatest.Opts(t, info.Brokers)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		r, err := identity.Bind("acme", app, "long@example.com", strings.Repeat("x", 256), time.Now()).Record(topics.Identities)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		bounce(t, info.IngressURL, "acme", "long@example.com", "c-long", fired)
		testsupport.WaitFor(t, "the dead letter", 60*time.Second, func() bool {
			for _, r := range kafkatest.Consume(t, info.Brokers, topics.EventsDLQ, 1, 30*time.Second) {
				if strings.Contains(kafka.Header(r, kafka.HeaderReason), "identity longer than 255") {
					return true
				}
			}
			return false
		})
	})

	t.Run("Redis flushed mid-run", func(t *testing.T) {
		// One event waits for its identity; then Redis loses everything.
		bounce(t, info.IngressURL, "acme", "waiting@example.com", "c-flush-1", fired)
		testsupport.WaitFor(t, "the event pending", 30*time.Second, func() bool { return pendingCount(t, rdb, app) == 1 })
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		// An address whose identity only Kafka remembers, and the waiting
		// address's identity arriving after the flush.
		bounce(t, info.IngressURL, "acme", "Before@example.com", "c-flush-2", fired)
		feed(t, info.IngressURL, app, "waiting@example.com", "User-Waiting")
		check(t, "User-Before", "c-flush-2")
		check(t, "User-Waiting", "c-flush-1")
		testsupport.WaitFor(t, "pending empty", 30*time.Second, func() bool { return pendingCount(t, rdb, app) == 0 })
		// Nothing of acme's was dead-lettered by the flush.
		for _, r := range kafkatest.Consume(t, info.Brokers, topics.EventsDLQ, 0, 5*time.Second) {
			if kafka.Header(r, kafka.HeaderSource) == "acme" && !strings.Contains(kafka.Header(r, kafka.HeaderReason), "identity longer") {
				t.Errorf("dead letter for acme: %s", kafka.Header(r, kafka.HeaderReason))
			}
		}
	})

	if st := info.Sink.Stats(); st.Rejected != 0 || st.Throttled != 0 {
		t.Errorf("Heap stand-in stats %+v", st)
	}
	// The feed forwarded every call to Heap's add_user_properties.
	if n := len(info.Sink.AcceptedUsers()); n != 5 {
		t.Errorf("Heap's add_user_properties got %d users, want the 5 fed", n)
	}
}

func identityKey(email string) string { return identity.Bind("", "", email, "x", time.Time{}).EmailKey }
