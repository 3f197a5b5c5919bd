package adversary

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// The legitimate traffic: what Mailchimp and Mandrill send, at a steady
// rate, beside each attack. Mandrill batches are the fixture batch's events
// with fresh ids, signed for the source's registered URL and key; audience
// webhooks are the fixture bodies in turn.

// Source is the one source the run registers: Mandrill's URL and key are
// the fixture batch's, so legitimate batches are signed as Mandrill signs.
func Source() source.Source {
	sig := fixtures.Mandrill()
	return source.Source{
		ID:                 sig.RegisteredURL[strings.LastIndexByte(sig.RegisteredURL, '/')+1:],
		HeapAppID:          "adversary",
		WebhookSecret:      "adversary-secret-0123456789abcdef",
		MandrillWebhookURL: sig.RegisteredURL,
		MandrillWebhookKey: sig.WebhookKey,
	}
}

// payloads builds legitimate requests for one source.
type payloads struct {
	src      source.Source
	events   []map[string]any // the fixture batch, decoded
	audience [][]byte         // fixture audience webhook bodies
}

func newPayloads(src source.Source) (*payloads, error) {
	form, err := url.ParseQuery(string(fixtures.Read("mandrill/webhook.form")))
	if err != nil {
		return nil, fmt.Errorf("mandrill fixture: %w", err)
	}
	p := &payloads{src: src}
	if err := json.Unmarshal([]byte(form.Get(mailchimp.MandrillEventsField)), &p.events); err != nil {
		return nil, fmt.Errorf("mandrill fixture: %w", err)
	}
	hooks := fixtures.ListWebhooks()
	for _, name := range fixtures.ListWebhookNames() {
		p.audience = append(p.audience, hooks[name])
	}
	if len(p.events) == 0 || len(p.audience) == 0 {
		return nil, errors.New("empty fixtures")
	}
	return p, nil
}

// mandrill is batch n: the fixture events, each with an id of its own, as a
// form body and its X-Mandrill-Signature.
func (p *payloads) mandrill(n int) (body []byte, sig string, err error) {
	evs := make([]json.RawMessage, len(p.events))
	for i, e := range p.events {
		id := fmt.Sprintf("%016x%016x", n, i)
		e = maps.Clone(e) // what changes is this batch's own
		e["_id"] = id
		if msg, ok := e["msg"].(map[string]any); ok {
			msg = maps.Clone(msg)
			msg["_id"] = id
			e["msg"] = msg
		}
		if evs[i], err = json.Marshal(e); err != nil {
			return nil, "", err
		}
	}
	arr, err := json.Marshal(evs)
	if err != nil {
		return nil, "", err
	}
	form := url.Values{mailchimp.MandrillEventsField: {string(arr)}}
	return []byte(form.Encode()), mailchimp.MandrillSignature(p.src.MandrillWebhookURL, p.src.MandrillWebhookKey, form), nil
}

func (p *payloads) mandrillRequest(ctx context.Context, base string, n int) (*http.Request, error) {
	body, sig, err := p.mandrill(n)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webhooks/mandrill/"+p.src.ID, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(mailchimp.MandrillSignatureHdr, sig)
	return req, nil
}

func (p *payloads) audienceRequest(ctx context.Context, base string, n int) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/webhooks/mailchimp/"+p.src.ID+"/"+p.src.WebhookSecret, bytes.NewReader(p.audience[n%len(p.audience)]))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// Legit kinds.
const (
	KindMandrill = "mandrill"
	KindAudience = "audience"
)

// request builds the n-th request of a kind.
type request func(ctx context.Context, base string, n int) (*http.Request, error)

func (p *payloads) request(kind string) request {
	if kind == KindMandrill {
		return p.mandrillRequest
	}
	return p.audienceRequest
}

// legitClient is a webhook sender's client: a connection of its own per
// request (as a sender that posts now and then has), bounded by timeout
// (Mailchimp gives up on a webhook after 10 s).
func legitClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: timeout}).DialContext,
	}}
}

// warmUp posts one request of each kind until each is answered 2xx: the
// producer's connections are up before anything is measured.
func warmUp(ctx context.Context, p *payloads, base string, timeout time.Duration) error {
	cl := legitClient(timeout)
	for _, kind := range []string{KindMandrill, KindAudience} {
		deadline := time.Now().Add(60 * time.Second)
		for n := 0; ; n++ {
			status, reason := send(ctx, cl, p.request(kind), base, n)
			if status/100 == 2 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("warm-up %s webhook not accepted within 60s: %s", kind, reason)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// send makes one request and returns its status (0: no answer) and, when
// it was not 2xx, why.
func send(ctx context.Context, cl *http.Client, mk request, base string, n int) (int, string) {
	req, err := mk(ctx, base, n)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, failure(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return resp.StatusCode, ""
}

// failure names why a request got no answer, without its URL (an audience
// webhook's path holds the source's secret).
func failure(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed without an answer"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// legitTally is what one kind's sender saw.
type legitTally struct {
	mu       sync.Mutex
	kind     string
	sent, ok int
	failures map[string]int
	lat      []time.Duration // of the 2xx answers
}

func (t *legitTally) record(status int, reason string, lat time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent++
	if status/100 == 2 {
		t.ok++
		t.lat = append(t.lat, lat)
		return
	}
	if t.failures == nil {
		t.failures = map[string]int{}
	}
	t.failures[reason]++
}

// sendAtRate posts kind at rate per second, open loop (a slow answer does
// not slow the sending, as it does not slow Mailchimp's), until ctx ends;
// then it waits for the requests in flight, each bounded by the client's
// timeout.
func sendAtRate(ctx context.Context, p *payloads, kind, base string, rate int, timeout time.Duration) *legitTally {
	t := &legitTally{kind: kind}
	if rate <= 0 {
		return t
	}
	cl := legitClient(timeout)
	mk := p.request(kind)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		wg.Go(func() {
			// Not ctx: a request in flight when the attack ends is still
			// answered or times out, and counts.
			start := time.Now()
			status, reason := send(context.Background(), cl, mk, base, n)
			t.record(status, reason, time.Since(start))
		})
		select {
		case <-ctx.Done():
			wg.Wait()
			return t
		case <-tick.C:
		}
	}
}
