package adversary

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         procMem
		err          bool
	}{
		{name: "running", status: "Name:\tingress\nVmPeak:\t 1261440 kB\nVmSize:\t 1261000 kB\nVmHWM:\t   52340 kB\nVmRSS:\t   41200 kB\nThreads:\t9\n",
			want: procMem{RSS: 41200 << 10, HWM: 52340 << 10, VirtPeak: 1261440 << 10}},
		{name: "zombie", status: "Name:\tingress\nState:\tZ (zombie)\nThreads:\t1\n", err: true},
		{name: "garbled", status: "VmPeak:\t 2 kB\nVmHWM:\t  12 MB\nVmRSS:\t 1 kB\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatus(tc.status)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
}

func TestCheck(t *testing.T) {
	rep := &Report{Options: Options{RSSCap: 4 << 30}, Results: []Result{
		{Attack: "baseline", PeakRSSMiB: 30, LegitSent: 50, LegitOK: 50, LegitSuccess: 1},
		{Attack: "slow-body", PeakRSSMiB: 4200, OverCap: true, LegitSent: 200, LegitOK: 150, LegitSuccess: 0.75},
		{Attack: "idle", PeakRSSMiB: 200, LegitSent: 200, LegitOK: 199, LegitSuccess: 0.995},
	}}
	if got := rep.Check(0, 0); len(got) != 0 {
		t.Fatalf("no bounds: %q, want nothing", got)
	}
	got := rep.Check(256, 0.99)
	if len(got) != 2 || !strings.HasPrefix(got[0], "slow-body: peak RSS over 4.0 GiB") || !strings.HasPrefix(got[1], "slow-body: legitimate success 75.0%") {
		t.Fatalf("Check(256, 0.99) = %q", got)
	}
	if got := rep.Check(150, 0); len(got) != 2 {
		t.Fatalf("Check(150, 0) = %q, want slow-body and idle", got)
	}
}

// The legitimate batches verify as Mandrill's do, each has ids of its own,
// and the audience bodies parse.
func TestPayloads(t *testing.T) {
	src := Source()
	p, err := newPayloads(src)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for n := range 3 {
		body, sig, err := p.mandrill(n)
		if err != nil {
			t.Fatal(err)
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			t.Fatal(err)
		}
		if !mailchimp.VerifyMandrillSignature(src.MandrillWebhookURL, src.MandrillWebhookKey, form, sig) {
			t.Fatalf("batch %d: signature does not verify", n)
		}
		units, err := mailchimp.ScanMandrillBatch([]byte(form.Get(mailchimp.MandrillEventsField)), nil)
		if err != nil || len(units) != len(p.events) {
			t.Fatalf("batch %d: %d units, %v; want %d", n, len(units), err, len(p.events))
		}
		for _, u := range units {
			if seen[string(u.MessageID)] {
				t.Fatalf("batch %d: message id %s seen before", n, u.MessageID)
			}
			seen[string(u.MessageID)] = true
		}
	}
	for i, b := range p.audience {
		if _, err := mailchimp.ParseListWebhook(b); err != nil {
			t.Errorf("audience body %d: %v", i, err)
		}
	}
}

func TestMaxPostBodies(t *testing.T) {
	const size = 1 << 20
	one, two := maxPostBodies(size)
	if len(one) != size || len(two) != size {
		t.Fatalf("sizes %d, %d; want %d", len(one), len(two), size)
	}
	if _, single, err := mailchimp.UnescapeMandrillForm(append([]byte(nil), one...)); !single || err != nil {
		t.Fatalf("one-field body: single %v, %v", single, err)
	}
	form, err := url.ParseQuery(string(two))
	if err != nil || len(form) != 2 || len(form[mailchimp.MandrillEventsField]) != 1 {
		t.Fatalf("two-field body: %d fields, %v", len(form), err)
	}
}

// Against a server with header and idle timeouts, slowloris and idle
// connections are all counted as closed by the server, after about the
// timeout; against one without, they are still open when the attack ends.
func TestHoldCountsServerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()

	o := DefaultOptions()
	o.Conns, o.Trickle = 20, 20*time.Millisecond
	for _, name := range []string{Slowloris, Idle} {
		a, err := o.attack(name, "acme")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tl := &tally{}
		a.run(ctx, ln.Addr().String(), tl)
		cancel()
		s := tl.stats()
		if s.Opened != o.Conns || s.ServerClosed != o.Conns || s.StillOpen != 0 {
			t.Errorf("%s: opened %d, server closed %d, still open %d; want all %d closed by the server", name, s.Opened, s.ServerClosed, s.StillOpen, o.Conns)
		}
		if s.ClosedFirstMs < 150 || s.ClosedLastMs > 1900 {
			t.Errorf("%s: closed after %.0f-%.0f ms, want about 200 ms", name, s.ClosedFirstMs, s.ClosedLastMs)
		}
		if name == Idle && s.Statuses["200"] != o.Conns {
			t.Errorf("idle: answers %v, want %d × 200", s.Statuses, o.Conns)
		}
	}

	open := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go open.Serve(ln2)
	defer open.Close()
	a, _ := o.attack(Idle, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	tl := &tally{}
	a.run(ctx, ln2.Addr().String(), tl)
	if s := tl.stats(); s.StillOpen != o.Conns || s.ServerClosed != 0 {
		t.Errorf("no idle timeout: still open %d, server closed %d; want %d, 0", s.StillOpen, s.ServerClosed, o.Conns)
	}

	// With a life, each connection is dialled again when it ends.
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	tl = &tally{}
	hold(ctx, ln2.Addr().String(), 5, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), nil, 0, 50*time.Millisecond, tl)
	if s := tl.stats(); s.Opened < 15 || s.StillOpen != 5 || s.ServerClosed != 0 {
		t.Errorf("churn: opened %d, still open %d, server closed %d; want ≥ 15, 5, 0", s.Opened, s.StillOpen, s.ServerClosed)
	}
}
