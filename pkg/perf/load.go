package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/campaigns"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Payloads the load is made of: real-shaped Mailchimp units, as the fixtures.

const registeredURL = "https://perf.example/webhooks/mandrill/"

func mandrillEvent(i int, email string, ts int64) []byte {
	kind, extra := "open", ""
	if i%3 == 1 {
		kind, extra = "click", fmt.Sprintf(`"url":"https://shop.example/track/%d",`, i)
	}
	return fmt.Appendf(nil, `{"event":%q,"ts":%d,"_id":"m%08d",%s"ip":"192.0.2.44","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6)","msg":{"_id":"m%08d","ts":%d,"state":"sent","subject":"Your order #%d has shipped","email":%q,"sender":"no-reply@shop.example","tags":["shipping","orders"],"metadata":{"user_ref":"u-%d"}}}`,
		kind, ts, i, extra, i, ts-300, i, email, i)
}

func cleanedWebhook(campaign int, email string) []byte {
	f := url.Values{"type": {"cleaned"}, "fired_at": {"2026-10-02 14:21:09"}, "data[list_id]": {"7c1e5d2a90"},
		"data[campaign_id]": {fmt.Sprintf("c%04d", campaign)}, "data[reason]": {"hard"}, "data[email]": {email}}
	return []byte(f.Encode())
}

// runID tells this run's apps from earlier runs' on a shared Redis.
var runID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

func email(i int) string { return fmt.Sprintf("user%d@example.com", i) }

// perfSources are n sources s0..s(n-1), apps app0.. . custom makes them join
// on a custom property, so the mapper resolves identities through Redis.
func perfSources(tag string, n int, custom bool) []source.Source {
	var out []source.Source
	for i := range n {
		id := fmt.Sprintf("%s%d", tag, i)
		s := source.Source{
			// A run's own app ids: the emitter's ledger (in Redis, kept for a
			// day) must not recognise another run's events.
			ID: id, HeapAppID: "app-" + id + "-" + runID,
			WebhookSecret:      "perf-secret-0123456789abcdef",
			MandrillWebhookURL: registeredURL + id,
			MandrillWebhookKey: "perf-mandrill-key-0123456789",
		}
		if custom {
			s.EmailProperty = "email"
		}
		out = append(out, s)
	}
	return out
}

const (
	perfEmails    = 2000 // distinct addresses per app, at least
	perfCampaigns = 20
)

// emailCount is how many addresses a backlog of n raw records uses: enough
// that no two audience webhooks report the same campaign and address, so
// every event is new to Heap and the ledger skips none.
func emailCount(n int) int { return max(perfEmails, n/(4*perfCampaigns)+1) }

// seedRedis puts what a warm cache holds: every address's identity and the
// campaigns' titles, so the mapper's lookups hit.
func (e *Env) seedRedis(ctx context.Context, srcs []source.Source, emails int) error {
	ids, cs := identity.NewStore(e.Redis), campaigns.NewStore(e.Redis)
	for _, s := range srcs {
		var metas []campaigns.Meta
		for c := range perfCampaigns {
			metas = append(metas, campaigns.Meta{ID: fmt.Sprintf("c%04d", c), Title: fmt.Sprintf("October product update %d", c), ListID: "7c1e5d2a90", Type: "regular"})
		}
		if err := cs.Remember(ctx, s.ID, metas); err != nil {
			return err
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				for j := w; j < emails; j += 8 {
					if err := ids.Put(ctx, s.HeapAppID, events.EmailKey(email(j)), fmt.Sprintf("id-%d", j)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// produceRaw writes n mailchimp.raw records as ingress would: three Mandrill
// events (open, click, open) to one audience "cleaned" webhook, spread over srcs.
func (e *Env) produceRaw(ctx context.Context, topic string, srcs []source.Source, n int) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	ts := time.Now().Unix()
	batch := make([]*kgo.Record, 0, 5000)
	emails := emailCount(n)
	for i := range n {
		s := srcs[i%len(srcs)]
		em := email((i / len(srcs)) % emails)
		var kind string
		var val []byte
		if i%4 == 3 {
			em = email((i / 4 / perfCampaigns) % emails)
			kind, val = mailchimp.KindListWebhook, cleanedWebhook((i/4)%perfCampaigns, em)
		} else {
			kind, val = mailchimp.KindMandrillEvent, mandrillEvent(i, em, ts)
		}
		batch = append(batch, &kgo.Record{Topic: topic, Key: []byte(s.ID + "/" + em), Value: val, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(s.ID)},
			{Key: kafka.HeaderKind, Value: []byte(kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(now)},
			{Key: kafka.HeaderRequestID, Value: fmt.Appendf(nil, "perf-%d", i)},
		}})
		if len(batch) == cap(batch) || i == n-1 {
			if err := e.Kafka.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				return fmt.Errorf("produce raw: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// waitGroup waits until group is stable with members members, each with
// partitions.
func (e *Env) waitGroup(ctx context.Context, group string, members int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		described, err := e.Admin.DescribeGroups(ctx, group)
		if err == nil {
			g := described[group]
			busy := 0
			for _, m := range g.Members {
				if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 {
					busy++
				}
			}
			if g.State == "Stable" && len(g.Members) == members && busy == members {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s not stable with %d members with partitions after 60 s (%v)", group, members, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// committed is the group's committed offsets on topic, summed.
func (e *Env) committed(ctx context.Context, group, topic string) (int64, error) {
	resps, err := e.Admin.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) || errors.Is(err, kerr.CoordinatorLoadInProgress) {
		return 0, nil // nothing committed yet
	}
	if err != nil {
		return 0, err
	}
	var sum int64
	resps.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			sum += o.At
		}
	})
	return sum, nil
}

// throughput polls progress until it reaches total and returns units/s
// counted from the first progress seen (start-up, process start and group
// join to first fetch, is not the stage's throughput), and counted from the
// first progress after the poll where steady first reported true (nil: true
// at the first poll).
func throughput(ctx context.Context, progress func() (int64, error), total int64, timeout time.Duration, alive func() error, steady func() bool) (drainRate, error) {
	deadline := time.Now().Add(timeout)
	var t0, ts time.Time
	var n0, ns int64
	seen := int64(-1) // progress at the first poll that saw it steady
	for {
		n, err := progress()
		if err != nil {
			return drainRate{}, err
		}
		now := time.Now()
		if n > 0 && t0.IsZero() {
			t0, n0 = now, n
		}
		if seen < 0 && (steady == nil || steady()) {
			seen = n
		}
		// The steady window starts at a poll that saw a commit: a poll
		// between commits would count a transaction in flight whole.
		if ts.IsZero() && seen >= 0 && n > seen {
			ts, ns = now, n
		}
		if n >= total {
			if now.Sub(t0) <= 0 || n == n0 {
				return drainRate{}, fmt.Errorf("all %d done in the first poll: raise the record count", total)
			}
			r := drainRate{First: float64(n-n0) / now.Sub(t0).Seconds()}
			r.Steady, r.SteadyAfter = r.First, 0
			if !ts.IsZero() && n > ns && now.Sub(ts) > 0 {
				r.Steady, r.SteadyAfter = float64(n-ns)/now.Sub(ts).Seconds(), ts.Sub(t0)
			} else if steady != nil {
				r.NeverSteady = true
			}
			return r, nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return drainRate{}, err
			}
		}
		if now.After(deadline) {
			return drainRate{}, fmt.Errorf("%d of %d done within %s", n, total, timeout)
		}
		select {
		case <-ctx.Done():
			return drainRate{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// drainRate is a backlog's drain rate in units/s: from the first unit done,
// and from when the service was steady (steady reported true) with how long
// after the first unit that was: a start-up rebalance lies between them.
type drainRate struct {
	First, Steady float64
	SteadyAfter   time.Duration
	NeverSteady   bool // done before it was steady: Steady is First
}

// loadResult is what a load generator saw.
type loadResult struct {
	ok, fail  int64
	elapsed   time.Duration
	lat       []time.Duration // per successful request
	firstFail string          // why the first failed request failed
}

// failed says how many requests failed, and the first one's reason.
func (r loadResult) failed() string {
	if r.fail == 0 {
		return "0 failed"
	}
	return fmt.Sprintf("%d failed (the first: %s)", r.fail, r.firstFail)
}

func (r loadResult) perSec() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// add is r and o together: their counts, times and latencies.
func (r loadResult) add(o loadResult) loadResult {
	first := r.firstFail
	if first == "" {
		first = o.firstFail
	}
	return loadResult{ok: r.ok + o.ok, fail: r.fail + o.fail, elapsed: r.elapsed + o.elapsed, lat: append(r.lat, o.lat...), firstFail: first}
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}}
}

// closedLoop runs conc workers, each posting back to back for dur.
func closedLoop(ctx context.Context, conc int, dur time.Duration, mk func() (*http.Request, error)) (loadResult, error) {
	cl := newHTTPClient(conc)
	defer cl.CloseIdleConnections()
	var ok, fail atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
			for ctx.Err() == nil {
				req, err := mk()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				t := time.Now()
				resp, err := cl.Do(req.WithContext(ctx))
				if err != nil {
					if ctx.Err() == nil {
						fail.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
					mine = append(mine, time.Since(t))
				} else {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg))))
				}
			}
		})
	}
	wg.Wait()
	r := loadResult{ok: ok.Load(), fail: fail.Load(), elapsed: time.Since(start), lat: lat}
	err, _ := firstErr.Load().(error)
	if err != nil {
		r.firstFail = err.Error()
	}
	if err != nil && r.ok == 0 {
		return r, err
	}
	return r, nil
}

// listRequest is an audience webhook post for source s.
func listRequest(base string, s source.Source, i int) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/mailchimp/"+s.ID+"/"+s.WebhookSecret,
		bytes.NewReader(cleanedWebhook(i%perfCampaigns, email(i%perfEmails))))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// mandrillBody is a signed Mandrill webhook body of the given events.
func mandrillBody(s source.Source, evs [][]byte) ([]byte, string) {
	arr, _ := json.Marshal(slices.Collect(func(yield func(json.RawMessage) bool) {
		for _, e := range evs {
			if !yield(e) {
				return
			}
		}
	}))
	form := url.Values{mailchimp.MandrillEventsField: {string(arr)}}
	return []byte(form.Encode()), mailchimp.MandrillSignature(s.MandrillWebhookURL, s.MandrillWebhookKey, form)
}

func mandrillRequest(base string, s source.Source, body []byte, sig string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/mandrill/"+s.ID, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(mailchimp.MandrillSignatureHdr, sig)
	return req, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// produceEvents writes perApp mapped events per source to heap.events, apps
// interleaved, 200 identities per app (Heap's per-identity limit is 1,000/min).
func (e *Env) produceEvents(ctx context.Context, topics kafka.Topics, srcs []source.Source, perApp int) error {
	codec, err := events.NewCodec()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := make([]*kgo.Record, 0, 5000)
	for k := range perApp {
		for _, s := range srcs {
			ident := email(k % 200)
			ev := events.Event{ID: events.ID(s.HeapAppID, "perf", fmt.Sprint(k)), SourceID: s.ID, AppID: s.HeapAppID,
				Identity: ident, EmailKey: events.EmailKey(ident), Name: events.NameOpen, Time: now,
				CampaignID: "c0001", CampaignTitle: "October product update", ListID: "7c1e5d2a90", IP: "192.0.2.44",
				Lineage: events.Lineage{Topic: topics.Raw, Offset: int64(k), Kind: mailchimp.KindMandrillEvent, ReceivedAt: now}}
			val, err := codec.Encode(ev)
			if err != nil {
				return err
			}
			batch = append(batch, &kgo.Record{Topic: topics.Events, Key: ev.Key(), Value: val, Headers: []kgo.RecordHeader{
				{Key: kafka.HeaderSource, Value: []byte(ev.SourceID)},
				{Key: kafka.HeaderEventID, Value: []byte(ev.ID)},
				{Key: kafka.HeaderEventName, Value: []byte(ev.Name)},
			}})
			if len(batch) == cap(batch) {
				if err := e.Kafka.ProduceSync(ctx, batch...).FirstErr(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	return e.Kafka.ProduceSync(ctx, batch...).FirstErr()
}
