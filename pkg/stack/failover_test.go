package stack_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack/stacktest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// TestStackRedisFailover: a Sentinel failover forced while Mandrill batches
// stream in loses and doubles nothing in Heap. It runs where CI starts a
// Sentinel setup (REDIS_SENTINEL_ADDRS) and names the command that forces a
// failover (REDIS_FAILOVER_CMD).
func TestStackRedisFailover(t *testing.T) {
	failover := os.Getenv("REDIS_FAILOVER_CMD")
	if failover == "" || redistest.Mode(t) != "sentinel" {
		t.Skip("needs Redis Sentinel (REDIS_SENTINEL_ADDRS) and REDIS_FAILOVER_CMD; CI runs it on .ci/redis.sh's")
	}
	prefix := kafkatest.Prefix(t)
	app := prefix + "app"
	env := stacktest.Env(t, prefix)
	env.SourcesFile = writeSources(t, app)
	info := stacktest.Start(t, env)
	sig := fixtures.Mandrill()
	open := fixtureEvent(t, "open")

	const batches, per = 20, 25
	var wg sync.WaitGroup
	for b := range batches {
		if b == batches/3 {
			wg.Go(func() {
				out, err := exec.Command("sh", "-c", failover).CombinedOutput()
				if err != nil {
					t.Errorf("failover (%s): %v\n%s", failover, err, out)
					return
				}
				t.Logf("failover forced mid-stream: %s", strings.TrimSpace(string(out)))
			})
		}
		evs := make([]map[string]any, per)
		for i := range evs {
			n := b*per + i
			e := clone(t, open)
			e["_id"] = fmt.Sprintf("%032x", n)
			e["ts"] = 1759413912 + n
			e["msg"].(map[string]any)["_id"] = fmt.Sprintf("%032x", n)
			evs[i] = e
		}
		body, _ := json.Marshal(evs)
		form := url.Values{"mandrill_events": {string(body)}}
		postUntilAccepted(t, info.IngressURL+"/webhooks/mandrill/acme", form,
			mailchimp.MandrillSignature(sig.RegisteredURL, sig.WebhookKey, form))
	}
	wg.Wait()
	got := waitAccepted(t, info.Sink, batches*per, 120*time.Second)
	seen := map[string]int{}
	for _, s := range got {
		seen[s]++
	}
	if len(got) != batches*per || len(seen) != batches*per {
		t.Fatalf("Heap has %d events (%d distinct), want %d, each once", len(got), len(seen), batches*per)
	}
}

// fixtureEvent is the Mandrill fixture batch's event of kind.
func fixtureEvent(t *testing.T, kind string) map[string]any {
	t.Helper()
	form, err := url.ParseQuery(string(fixtures.Read("mandrill/webhook.form")))
	if err != nil {
		t.Fatal(err)
	}
	var evs []map[string]any
	if err := json.Unmarshal([]byte(form.Get("mandrill_events")), &evs); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e["event"] == kind {
			return e
		}
	}
	t.Fatalf("no %s event in the fixture batch", kind)
	return nil
}

func clone(t *testing.T, m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// postUntilAccepted posts a signed Mandrill batch as Mandrill does: again
// until it is answered 200.
func postUntilAccepted(t *testing.T, to string, form url.Values, sig string) {
	t.Helper()
	testsupport.WaitForEvery(t, "POST "+to+" accepted", 60*time.Second, 200*time.Millisecond, func() bool {
		req, _ := http.NewRequest(http.MethodPost, to, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(mailchimp.MandrillSignatureHdr, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
