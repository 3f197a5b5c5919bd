package identityfeed_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identityfeed"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
)

// Bodies whose keys could be read two ways (encoding/json matches names
// case-insensitively and keeps the last duplicate; another reader may keep
// the first, or match exactly) are refused whole: nothing recorded, nothing
// forwarded.
func TestFeedRefusesAmbiguousKeys(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	for _, c := range []struct {
		name, token, body, errPart string
	}{
		// The review's case: app2's token, a body naming app1 first. It
		// validated as app2 and was forwarded as it came, to whoever reads
		// the first app_id.
		{"another app first, case variant", tokFwd,
			`{"app_id":"app1","App_Id":"app2","identity":"F1","properties":{"email":"f1@example.com"}}`,
			`top level: keys "app_id" and "App_Id" differ only in case`},
		{"another app last, case variant", tokFwd,
			`{"APP_ID":"app2","app_id":"app1","identity":"F1","properties":{"email":"f1@example.com"}}`,
			`keys "APP_ID" and "app_id" differ only in case`},
		{"another app, duplicate", tokFwd,
			`{"app_id":"app1","app_id":"app2","identity":"F1","properties":{"email":"f1@example.com"}}`,
			`top level: key "app_id" appears twice`},
		{"duplicate through an escape", tokAcme,
			`{"app_id":"app1","app\u005fid":"app1","identity":"u1","properties":{"email":"a@example.com"}}`,
			`key "app_id" appears twice`},
		{"Unicode case folding (long s)", tokAcme,
			`{"app_id":"app1","users":[{"identity":"u1","properties":{}}],"uſers":[{"identity":"u2","properties":{}}]}`,
			`keys "users" and "uſers" differ only in case`},
		{"identity twice", tokAcme,
			`{"app_id":"app1","identity":"u1","identity":"u2","properties":{"email":"a@example.com"}}`,
			`key "identity" appears twice`},
		{"nested: a property twice", tokFwd,
			`{"app_id":"app2","identity":"F1","properties":{"email":"f1@example.com","email":"evil@example.com"}}`,
			`properties: key "email" appears twice`},
		{"nested: a property in two cases, in users", tokFwd,
			`{"app_id":"app2","users":[{"identity":"F0","properties":{"plan":"pro"}},{"identity":"F1","properties":{"email":"f1@example.com","Email":"evil@example.com"}}]}`,
			`users[1].properties: keys "email" and "Email" differ only in case`},
		{"nested: a user's identity in two cases", tokFwd,
			`{"app_id":"app2","users":[{"identity":"F1","Identity":"F2","properties":{"email":"f1@example.com"}}]}`,
			`users[0]: keys "identity" and "Identity" differ only in case`},
		{"deeper: inside a property value nobody checks", tokAcme,
			`{"app_id":"app1","identity":"u1","properties":{"email":"a@example.com","meta":{"a":[{"x":1,"x":2}]}}}`,
			`properties.meta.a[0]: key "x" appears twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, brokers, nil)
			a := e.post(t, bearer(c.token), c.body)
			if a.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", a.status, a.raw)
			}
			if msg, _ := a.body["error"].(string); !strings.HasPrefix(msg, "ambiguous JSON: ") || !strings.Contains(msg, c.errPart) {
				t.Errorf("error %q, want ambiguous JSON: ...%s", msg, c.errPart)
			}
			if got := e.table(t); len(got) != 0 {
				t.Errorf("recorded %v from a refused body", got)
			}
			if st := e.heap.UserStats(); st.Requests != 0 {
				t.Errorf("Heap got %d calls for a refused body", st.Requests)
			}
			noSecretsLogged(t, e.logs)
		})
	}
}

// capturingHeap answers 200 to add_user_properties and keeps the bodies.
type capturingHeap struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *capturingHeap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	w.Write([]byte(`{}`))
}

func (c *capturingHeap) got() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

// What reaches Heap is the request the feed validated, encoded again: the
// caller's bytes never are. Keys the decoder matched case-insensitively come
// out in Heap's spelling, fields it ignored are dropped, numbers keep their
// digits, and each shape stays itself.
func TestFeedForwardsWhatItValidated(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	capture := &capturingHeap{}
	hs := httptest.NewServer(capture)
	t.Cleanup(hs.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	topics := kafkatest.Topics(t, brokers, 1)
	core, logs := observer.New(zap.DebugLevel)
	srv := httptest.NewServer(identityfeed.NewHandler(identityfeed.Config{
		Sources: testSources(t), Topic: topics.Identities, HeapURL: hs.URL,
		Heap: &heap.Client{Timeout: 5 * time.Second}, Log: zap.New(core),
	}, kafka.Producer{Client: cl}))
	t.Cleanup(srv.Close)

	for _, c := range []struct{ name, body, want string }{
		{"single, keys in other cases, an extra field, escapes",
			`{"App_Id":"app2","IDENTITY":"F\u0031","Properties":{"email":"f1@example.com","n":12.50,"s":"\u00e9<"},"extra":[1,{"k":2}]}`,
			`{"app_id":"app2","identity":"F1","properties":{"email":"f1@example.com","n":12.50,"s":"é\u003c"}}`},
		{"bulk",
			`{"app_id":"app2","users":[{"identity":"F1","properties":{"email":"f1@example.com"}},{"identity":"F2","properties":{"plan":"free"}}]}`,
			`{"app_id":"app2","users":[{"identity":"F1","properties":{"email":"f1@example.com"}},{"identity":"F2","properties":{"plan":"free"}}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(capture.got())
			req, _ := http.NewRequest(http.MethodPost, srv.URL+identityfeed.Path, strings.NewReader(c.body))
			req.Header.Set("Authorization", bearer(tokFwd))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"forwarded":true`)) {
				t.Fatalf("%d %s, want 200 forwarded", resp.StatusCode, answer)
			}
			got := capture.got()
			if len(got) != before+1 {
				t.Fatalf("Heap got %d calls, want 1", len(got)-before)
			}
			if diff := cmp.Diff(c.want, string(got[before])); diff != "" {
				t.Errorf("forwarded body (-want +got):\n%s", diff)
			}
		})
	}
	noSecretsLogged(t, logs)
}

// A refusal's reason may quote a property key, which may be an address:
// the caller reads it, the log does not.
func TestFeedRefusalLogHasNoAddress(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	body := `{"app_id":"app2","identity":"F1","properties":{"email":"f1@example.com","alice@example.com":true}}`
	a := e.post(t, bearer(tokFwd), body)
	if msg, _ := a.body["error"].(string); a.status != http.StatusBadRequest || !strings.Contains(msg, `"alice@example.com" must be a string or a number`) {
		t.Fatalf("%d %s, want 400 naming the property", a.status, a.raw)
	}
	noSecretsLogged(t, e.logs)
	var reason string
	for _, en := range e.logs.All() {
		if r, ok := en.ContextMap()["reason"].(string); ok {
			reason = r
		}
	}
	if !strings.Contains(reason, `"[address]" must be a string or a number`) {
		t.Errorf("logged reason %q, want the address replaced", reason)
	}
}

// The strict key check refuses exactly what it must: bodies without
// ambiguous keys pass it, whatever their nesting.
func TestFeedAcceptsDistinctKeys(t *testing.T) {
	e := newEnv(t, kafkatest.Brokers(t), nil)
	// The same key in sibling objects, and a value equal to a key, are fine.
	body := `{"app_id":"app1","users":[` +
		`{"identity":"u1","properties":{"email":"a@example.com","identity":"x","meta":{"email":1}}},` +
		`{"identity":"u2","properties":{"email":"b@example.com","e-mail":"c","email_2":"d"}}]}`
	if a := e.post(t, bearer(tokAcme), body); a.status != http.StatusOK || a.body["recorded"] != 2.0 {
		t.Fatalf("%d %s, want 200 with 2 recorded", a.status, a.raw)
	}
}
