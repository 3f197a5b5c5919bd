package adversary

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
)

// An attack holds the server's resources the way a hostile or broken client
// can, over raw connections so the harness controls every byte and sees
// when the server hangs up. Each runs until ctx ends, then closes what it
// opened.
type attack struct {
	name, about string
	run         func(ctx context.Context, addr string, t *tally)
}

// Attack names, in the default order.
const (
	Baseline = "baseline"
	SlowBody = "slow-body"
	// SlowBodyChurn is SlowBody with connections that hang up and dial
	// again: the buffers of ended requests are reused, and reuse is when a
	// buffer allocated for a declared length becomes resident.
	SlowBodyChurn = "slow-body-churn"
	Slowloris     = "slowloris"
	MaxPosts      = "max-posts"
	Idle          = "idle"
)

// AllAttacks are the attacks Run knows, baseline (legitimate traffic alone) first.
var AllAttacks = []string{Baseline, SlowBody, SlowBodyChurn, Slowloris, MaxPosts, Idle}

// forgedSignature is a well-formed X-Mandrill-Signature (base64 of 20
// bytes) that no key produced: a server cannot tell it from a real one
// before it has read the body.
const forgedSignature = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="

func (o Options) attack(name, source string) (attack, error) {
	path := "/webhooks/mandrill/" + source
	switch name {
	case Baseline:
		return attack{name: name, about: "no attack: the legitimate senders alone",
			run: func(ctx context.Context, _ string, _ *tally) { <-ctx.Done() }}, nil
	case SlowBody:
		head := requestHead(path, o.SlowBodyLength, forgedSignature)
		body := []byte(mailchimp.MandrillEventsField + "=%5B%7B")
		return attack{name: name,
			about: fmt.Sprintf("%d connections each declaring Content-Length %d on the Mandrill route (forged signature), then sending 1 body byte every %s",
				o.Conns, o.SlowBodyLength, o.Trickle),
			run: func(ctx context.Context, addr string, t *tally) {
				hold(ctx, addr, o.Conns, head, cycle(body, "a"), o.Trickle, 0, t)
			}}, nil
	case SlowBodyChurn:
		head := requestHead(path, o.SlowBodyLength, forgedSignature)
		body := []byte(mailchimp.MandrillEventsField + "=%5B%7B")
		return attack{name: name,
			about: fmt.Sprintf("%d connections as slow-body, each hanging up after %s and dialling again",
				o.Conns, o.Churn),
			run: func(ctx context.Context, addr string, t *tally) {
				hold(ctx, addr, o.Conns, head, cycle(body, "a"), o.Trickle, o.Churn, t)
			}}, nil
	case Slowloris:
		head := []byte("POST " + path + " HTTP/1.1\r\nHost: ingress\r\n")
		return attack{name: name,
			about: fmt.Sprintf("%d connections sending request headers 1 byte every %s, never ending them", o.Conns, o.Trickle),
			run: func(ctx context.Context, addr string, t *tally) {
				hold(ctx, addr, o.Conns, head, cycle(nil, "X-Pad: a\r\n"), o.Trickle, 0, t)
			}}, nil
	case MaxPosts:
		bare, forged := maxPostBodies(o.MaxPostSize)
		heads := [2][]byte{requestHead(path, int64(len(bare)), ""), requestHead(path, int64(len(forged)), forgedSignature)}
		bodies := [2][]byte{bare, forged}
		return attack{name: name,
			about: fmt.Sprintf("%d workers posting %d-byte Mandrill bodies back to back, a new connection each: half the one-field form with no signature, half a two-field form with a forged signature",
				o.MaxPosts, o.MaxPostSize),
			run: func(ctx context.Context, addr string, t *tally) {
				var wg sync.WaitGroup
				for w := range o.MaxPosts {
					wg.Go(func() {
						for ctx.Err() == nil {
							post(ctx, addr, heads[w%2], bodies[w%2], t)
						}
					})
				}
				wg.Wait()
			}}, nil
	case Idle:
		head := []byte("GET /healthz HTTP/1.1\r\nHost: ingress\r\n\r\n")
		return attack{name: name,
			about: fmt.Sprintf("%d keep-alive connections, each making one request, then holding the connection idle", o.Conns),
			run: func(ctx context.Context, addr string, t *tally) {
				hold(ctx, addr, o.Conns, head, nil, 0, 0, t)
			}}, nil
	}
	return attack{}, fmt.Errorf("unknown attack %q (known: %s)", name, strings.Join(AllAttacks, ", "))
}

// requestHead is a Mandrill POST's request line and headers, up to the body.
func requestHead(path string, length int64, sig string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n", path, length)
	if sig != "" {
		fmt.Fprintf(&b, "%s: %s\r\n", mailchimp.MandrillSignatureHdr, sig)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// cycle returns the bytes of first, then of rest over and over.
func cycle(first []byte, rest string) func(i int) byte {
	return func(i int) byte {
		if i < len(first) {
			return first[i]
		}
		return rest[(i-len(first))%len(rest)]
	}
}

// maxPostBodies are two bodies of exactly size bytes: the one-field form
// Mandrill sends (ingress unescapes it in place), and the same with a
// second field (which goes through url.ParseQuery). Their events are
// well-formed JSON objects, url-encoded.
func maxPostBodies(size int) (oneField, twoFields []byte) {
	prefix := mailchimp.MandrillEventsField + "=" + url.QueryEscape("[")
	unit := url.QueryEscape(`{"event":"open","ts":1759413912,"_id":"x","msg":{"_id":"x","email":"a@example.com"}},`)
	end := url.QueryEscape(`{}]`)
	build := func(suffix string) []byte {
		b := make([]byte, 0, size)
		b = append(b, prefix...)
		for len(b)+len(unit)+len(end)+len(suffix) <= size {
			b = append(b, unit...)
		}
		b = append(b, end...)
		b = append(b, suffix...)
		for len(b) < size {
			b = append(b, 'a') // the tail of the last field's value
		}
		return b[:size]
	}
	return build(""), build("&pad=")
}

// tally counts one attack's connections, concurrently.
type tally struct {
	mu         sync.Mutex
	opened     int
	dialFailed int
	dialErr    string
	closed     []time.Duration // by the server, after this long open
	stillOpen  int             // when the attack ended
	statuses   map[int]int     // answers to attack requests
	requests   int             // max-posts: requests that ended
	bytes      int64           // sent
}

func (t *tally) dial(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.dialFailed++
		if t.dialErr == "" {
			t.dialErr = failure(err)
		}
		return
	}
	t.opened++
}

func (t *tally) serverClosed(after time.Duration) {
	t.mu.Lock()
	t.closed = append(t.closed, after)
	t.mu.Unlock()
}

func (t *tally) leftOpen() { t.mu.Lock(); t.stillOpen++; t.mu.Unlock() }

func (t *tally) status(code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.statuses == nil {
		t.statuses = map[int]int{}
	}
	t.statuses[code]++
}

func (t *tally) sent(n int) {
	t.mu.Lock()
	t.bytes += int64(n)
	t.mu.Unlock()
}

func (t *tally) request() { t.mu.Lock(); t.requests++; t.mu.Unlock() }

var dialer = net.Dialer{Timeout: 5 * time.Second}

// hold opens n connections at once; each writes head, then one byte of
// drip every interval (none when drip is nil) until ctx ends or the server
// ends the connection. With a life, each connection is hung up after it,
// or when the server ends it, and dialled again, until ctx ends.
func hold(ctx context.Context, addr string, n int, head []byte, drip func(int) byte, every, life time.Duration, t *tally) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for holdOne(ctx, addr, head, drip, every, life, t) && life > 0 && ctx.Err() == nil {
			}
		})
	}
	wg.Wait()
}

// holdOne holds one connection; it reports whether it ended before ctx did.
func holdOne(ctx context.Context, addr string, head []byte, drip func(int) byte, every, life time.Duration, t *tally) bool {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if ctx.Err() != nil {
		if c != nil {
			c.Close()
		}
		return false
	}
	t.dial(err)
	if err != nil {
		time.Sleep(100 * time.Millisecond) // a refused dial would spin
		return true
	}
	defer c.Close()
	opened := time.Now()
	ended := make(chan struct{}) // the server closed the connection
	go func() {
		defer close(ended)
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			t.status(resp.StatusCode)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Write(head); err == nil {
		t.sent(n)
	}
	var tick, expired <-chan time.Time
	if drip != nil && every > 0 {
		tk := time.NewTicker(every)
		defer tk.Stop()
		tick = tk.C
	}
	if life > 0 {
		tm := time.NewTimer(life)
		defer tm.Stop()
		expired = tm.C
	}
	for i := 0; ; {
		select {
		case <-ended:
			t.serverClosed(time.Since(opened))
			return true
		case <-expired:
			if ctx.Err() != nil { // its life and the run ended together
				t.leftOpen()
				return false
			}
			return true
		case <-ctx.Done():
			select {
			case <-ended: // both at once: the server was first
				t.serverClosed(time.Since(opened))
			default:
				t.leftOpen()
			}
			return false
		case <-tick:
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			// A failed write means the server is gone: the reader sees it too.
			if _, err := c.Write([]byte{drip(i)}); err == nil {
				t.sent(1)
			}
			i++
		}
	}
}

// post sends one request of head and body on a new connection and reads
// the answer. A server that hangs up (answering or not) before the whole
// body was sent counts as closing the connection.
func post(ctx context.Context, addr string, head, body []byte, t *tally) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if ctx.Err() != nil {
		if c != nil {
			c.Close()
		}
		return
	}
	t.dial(err)
	if err != nil {
		time.Sleep(100 * time.Millisecond) // a refused dial would spin
		return
	}
	opened := time.Now()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	var mu sync.Mutex
	sent, total := 0, len(head)+len(body)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		for _, part := range [][]byte{head, body} {
			for len(part) > 0 {
				n, err := c.Write(part[:min(len(part), 256<<10)])
				t.sent(n)
				mu.Lock()
				sent += n
				mu.Unlock()
				if err != nil {
					return
				}
				part = part[n:]
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		t.status(resp.StatusCode)
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
	}
	// A server that read the whole body lets the last write return at
	// once; one that answered early may have stopped reading.
	select {
	case <-wrote:
	case <-time.After(time.Second):
	}
	mu.Lock()
	early := sent < total
	mu.Unlock()
	c.Close()
	<-wrote
	if err != nil && ctx.Err() != nil {
		return // the harness ended it before an answer
	}
	t.request()
	if early || err != nil {
		t.serverClosed(time.Since(opened))
	}
}
