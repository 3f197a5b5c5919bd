package statuspage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/stack/stacktest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/status"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/statuspage"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
)

// chromium returns Debian's chromium; the test skips without one, except in
// CI, which must have it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI needs a chromium binary on PATH (apt-get install chromium); the browser test never skips in CI")
	}
	t.Skip("no chromium on PATH (apt-get install chromium): skipping the browser test")
	return ""
}

// artifactDir is $TEST_ARTIFACTS, else artifacts/ at the repository root.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.work")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				root = wd
				break
			}
			root = parent
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func postForm(t *testing.T, url string, body []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/x-www-form-urlencoded", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST webhook: %d", resp.StatusCode)
	}
}

// pageState is what the browser shows of the page.
type pageState struct {
	state, total, html string
}

func load(ctx context.Context, url string) (pageState, error) {
	var p pageState
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return p, err
	}
	var err error
	if p.state, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#state"))); err != nil {
		return p, err
	}
	if p.total, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#delivered-total"))); err != nil {
		return p, err
	}
	p.html, err = chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	return p, err
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot artifact: %s", path)
}

// TestStatusPageBrowser runs the whole pipeline (ingress, mapper, emitter,
// the Heap stand-in) and watches a source's page in headless Chromium move
// from Waiting For Data to Connected once a webhook's event reached Heap.
func TestStatusPageBrowser(t *testing.T) {
	testsupport.Integration(t, "runs the whole stack and a browser")
	bin := chromium(t)
	id := "page-" + randomHex(4) // unique: tests may share one Redis
	src := source.Source{
		ID: id, HeapAppID: id + "-app",
		WebhookSecret:      "hook-" + randomHex(12),
		MandrillWebhookURL: "https://hooks.example.com/webhooks/mandrill/" + id,
		MandrillWebhookKey: "mkey-" + randomHex(12),
		IdentityToken:      "itok-" + randomHex(12),
	}
	secrets := []string{src.WebhookSecret, src.MandrillWebhookKey, src.IdentityToken}
	sourcesFile := filepath.Join(t.TempDir(), "sources.yaml")
	doc := fmt.Sprintf(`sources:
  - id: %s
    heap_app_id: %s
    webhook_secret: %s
    mandrill_webhook_url: %s
    mandrill_webhook_key: %s
    identity_token: %s
`, src.ID, src.HeapAppID, src.WebhookSecret, src.MandrillWebhookURL, src.MandrillWebhookKey, src.IdentityToken)
	if err := os.WriteFile(sourcesFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	env := stacktest.Env(t, kafkatest.Prefix(t))
	env.SourcesFile, env.InstanceID = sourcesFile, id
	info := stacktest.Start(t, env)

	// A skipped campaign whose reason a browser must show as text, not markup.
	rdb, err := redisconn.Open(env.RedisURL, env.Redis) // the stack's Redis
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	hostile := `<img src=x onerror="document.title='pwned'"> variate`
	if err := status.NewStore(rdb).Skipped(context.Background(), id, "c-variate", hostile); err != nil {
		t.Fatal(err)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1100, 1000))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The browser lives as long as the context of the first Run: this one.
	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()

	pageURL := info.IngressURL + "/sources/" + id
	before, err := load(ctx, pageURL)
	if err != nil {
		t.Fatalf("load %s: %v", pageURL, err)
	}
	if before.state != statuspage.WaitingForData || before.total != "0" {
		t.Fatalf("before any event: state %q, delivered %q", before.state, before.total)
	}
	screenshot(t, ctx, "statuspage-waiting.png")

	// One audience webhook: the campaign (for its title), then a bounce.
	hook := info.IngressURL + "/webhooks/mailchimp/" + id + "/" + src.WebhookSecret
	postForm(t, hook, fixtures.ListWebhooks()["campaign"])
	postForm(t, hook, fixtures.ListWebhooks()["cleaned-hard"])
	deadline := time.Now().Add(90 * time.Second)
	for !accepted(info, src.HeapAppID) {
		if time.Now().After(deadline) {
			t.Fatal("the Heap stand-in accepted no event of the source within 90s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The emitter counts right after Heap's answer: reload until it shows.
	var after pageState
	for {
		if after, err = load(ctx, pageURL); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if after.state != statuspage.WaitingForData || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	screenshot(t, ctx, "statuspage-connected.png")
	if after.state != statuspage.Connected {
		t.Fatalf("after Heap accepted the event: state %q", after.state)
	}
	if n, err := strconv.Atoi(after.total); err != nil || n < 1 {
		t.Errorf("delivered total %q, want > 0", after.total)
	}
	if title, err := chromedp.Run(ctx, chromedp.Title()); err != nil || strings.Contains(title, "pwned") {
		t.Errorf("title %q (%v): the hostile reason ran as markup", title, err)
	}
	for _, want := range []string{"Bounce Email", "c-variate", "&lt;img src=x",
		"/webhooks/mailchimp/" + id + "/&lt;your webhook_secret&gt;", src.MandrillWebhookURL} {
		if !strings.Contains(after.html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, s := range secrets {
		if strings.Contains(after.html, s) || strings.Contains(before.html, s) {
			t.Errorf("page holds a secret of the source config")
		}
	}

	// The JSON says the same.
	resp, err := http.Get(info.IngressURL + "/v1/sources/" + id + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v statuspage.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Status != statuspage.Connected || v.Delivered["Bounce Email"] < 1 || v.FirstEventAt == nil {
		t.Errorf("json: %+v", v)
	}
}

func accepted(info stack.Info, app string) bool {
	for _, a := range info.Sink.Accepted() {
		if a.AppID == app {
			return true
		}
	}
	return false
}
