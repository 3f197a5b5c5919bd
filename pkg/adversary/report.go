package adversary

import (
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/perf"
)

// Report is one run: a Result per attack.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Kafka    string    `json:"kafka"`
	Redis    string    `json:"redis"`
	Ingress  string    `json:"ingress"` // the binary attacked
	Options  Options   `json:"options"`
	Results  []Result  `json:"results"`
	Failures []string  `json:"failures,omitempty"` // bounds Check found broken
}

// Machine is where the run happened.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	LoadAvg string `json:"loadavg_at_start"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Result is one attack's figures.
type Result struct {
	Attack  string  `json:"attack"`
	About   string  `json:"about"`
	Seconds float64 `json:"seconds"` // how long it ran (less than asked when the cap ended it)
	// PeakRSSMiB is the largest of every VmRSS sampled and the process's
	// VmHWM at the last sample; OverCap says the cap ended the attack (the
	// peak is then a floor), Killed that the process was killed at one and
	// a half times the cap, Exited that it died on its own.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakVirtMiB is the largest address space (VmPeak): memory the process
	// reserved, resident or not (a buffer allocated for a declared length
	// and never written is not resident yet).
	PeakVirtMiB float64      `json:"peak_virt_mib"`
	OverCap     bool         `json:"over_cap,omitempty"`
	Killed      bool         `json:"killed,omitempty"`
	Exited      string       `json:"exited,omitempty"`
	Conns       *AttackStats `json:"attack_conns,omitempty"`
	// The legitimate traffic during the attack, both kinds together, then
	// each kind.
	LegitSent    int          `json:"legit_sent"`
	LegitOK      int          `json:"legit_ok"`
	LegitSuccess float64      `json:"legit_success"` // ok / sent; 0 when none was sent
	LegitP50Ms   float64      `json:"legit_p50_ms"`  // of the 2xx answers
	LegitP99Ms   float64      `json:"legit_p99_ms"`
	Legit        []LegitStats `json:"legit"`
	RSS          []Sample     `json:"rss_samples"`
}

// AttackStats are an attack's connections and what the server did to them.
type AttackStats struct {
	Opened     int    `json:"opened"`
	DialFailed int    `json:"dial_failed,omitempty"`
	DialError  string `json:"dial_error,omitempty"` // the first
	// ServerClosed connections the server ended (for max-posts: before
	// the whole body was sent, or without an answer); the times are how
	// long each had been open.
	ServerClosed  int            `json:"server_closed"`
	ClosedFirstMs float64        `json:"closed_first_ms,omitempty"`
	ClosedP50Ms   float64        `json:"closed_p50_ms,omitempty"`
	ClosedLastMs  float64        `json:"closed_last_ms,omitempty"`
	StillOpen     int            `json:"still_open"`         // when the attack ended
	Statuses      map[string]int `json:"statuses,omitempty"` // answers to attack requests
	Requests      int            `json:"requests,omitempty"` // max-posts: requests that ended
	SentBytes     int64          `json:"sent_bytes"`
}

func (t *tally) stats() *AttackStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &AttackStats{Opened: t.opened, DialFailed: t.dialFailed, DialError: t.dialErr, ServerClosed: len(t.closed),
		StillOpen: t.stillOpen, Requests: t.requests, SentBytes: t.bytes}
	if len(t.closed) > 0 {
		s.ClosedFirstMs, s.ClosedP50Ms, s.ClosedLastMs = ms(slices.Min(t.closed)), ms(percentile(t.closed, 0.5)), ms(slices.Max(t.closed))
	}
	for code, n := range t.statuses {
		if s.Statuses == nil {
			s.Statuses = map[string]int{}
		}
		s.Statuses[strconv.Itoa(code)] = n
	}
	return s
}

// LegitStats are one kind of legitimate traffic during an attack.
type LegitStats struct {
	Kind     string         `json:"kind"`
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"` // 2xx
	Failures map[string]int `json:"failures,omitempty"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
}

func (t *legitTally) stats() LegitStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := LegitStats{Kind: t.kind, Sent: t.sent, OK: t.ok, Failures: maps.Clone(t.failures),
		P50Ms: ms(percentile(t.lat, 0.5)), P99Ms: ms(percentile(t.lat, 0.99))}
	if len(t.lat) > 0 {
		s.MaxMs = ms(slices.Max(t.lat))
	}
	return s
}

// percentile is the p-quantile of d (nearest rank), 0 for none.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1 // ceil(n·p), 1-based
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Check returns the bounds r breaks: a peak RSS over maxRSSMiB (an attack
// the cap ended breaks any bound under the cap) and a legitimate success
// rate under minSuccess. Zero turns a bound off.
func (r *Report) Check(maxRSSMiB, minSuccess float64) []string {
	var out []string
	for _, res := range r.Results {
		if maxRSSMiB > 0 && (res.PeakRSSMiB > maxRSSMiB || res.OverCap || res.Killed) {
			out = append(out, fmt.Sprintf("%s: peak RSS %s, over the bound of %.0f MiB", res.Attack, r.rss(res), maxRSSMiB))
		}
		if minSuccess > 0 && (res.LegitSent == 0 || res.LegitSuccess < minSuccess) {
			out = append(out, fmt.Sprintf("%s: legitimate success %s, under the bound of %.2f%%", res.Attack, res.legitText(), minSuccess*100))
		}
		if res.Exited != "" && (maxRSSMiB > 0 || minSuccess > 0) {
			out = append(out, fmt.Sprintf("%s: the ingress process died: %s", res.Attack, res.Exited))
		}
	}
	return out
}

func (r Result) legitText() string {
	if r.LegitSent == 0 {
		return "none sent"
	}
	return fmt.Sprintf("%.1f%% (%d/%d)", r.LegitSuccess*100, r.LegitOK, r.LegitSent)
}

// Print writes the table, then a line per attack with what the table has
// no room for.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s, %s, load average at start %s\n", r.Machine.CPUs, r.Machine.Go, r.Machine.OS, r.Machine.LoadAvg)
	fmt.Fprintf(w, "kafka:   %s\nredis:   %s\ningress: %s (a fresh process per attack)\n", r.Kafka, r.Redis, r.Ingress)
	fmt.Fprintf(w, "legit:   %d signed Mandrill batches/s and %d audience webhooks/s, %s timeout\n\n",
		r.Options.LegitRate, r.Options.LegitRate, r.Options.LegitTimeout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "attack\tsecs\tpeak RSS\tpeak virt\tlegit 2xx\tp50\tp99\tattack conns\tserver closed\tclosed after (first/p50/last)")
	for _, res := range r.Results {
		conns, closed, after := "-", "-", "-"
		if c := res.Conns; c != nil {
			conns = strconv.Itoa(c.Opened)
			if c.DialFailed > 0 {
				conns += fmt.Sprintf(" (+%d refused)", c.DialFailed)
			}
			closed = strconv.Itoa(c.ServerClosed)
			if c.Requests > 0 {
				closed += fmt.Sprintf(" of %d requests", c.Requests)
			}
			if c.ServerClosed > 0 {
				after = fmt.Sprintf("%s / %s / %s", secs(c.ClosedFirstMs), secs(c.ClosedP50Ms), secs(c.ClosedLastMs))
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Attack, res.Seconds, r.rss(res), size(res.PeakVirtMiB), res.legitText(),
			msText(res.LegitP50Ms, res.LegitOK), msText(res.LegitP99Ms, res.LegitOK), conns, closed, after)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, res := range r.Results {
		fmt.Fprintf(w, "  %s: %s.", res.Attack, res.About)
		for _, l := range res.Legit {
			fmt.Fprintf(w, " %s %d/%d, p50 %s p99 %s max %s", l.Kind, l.OK, l.Sent, msText(l.P50Ms, l.OK), msText(l.P99Ms, l.OK), msText(l.MaxMs, l.OK))
			if len(l.Failures) > 0 {
				fmt.Fprintf(w, " (failed: %s)", counts(l.Failures))
			}
			fmt.Fprint(w, ";")
		}
		if c := res.Conns; c != nil {
			if len(c.Statuses) > 0 {
				fmt.Fprintf(w, " server answered the attack: %s;", counts(c.Statuses))
			}
			fmt.Fprintf(w, " %d still open at the end; %s sent", c.StillOpen, bytesText(c.SentBytes))
			if c.DialError != "" {
				fmt.Fprintf(w, "; first refused dial: %s", c.DialError)
			}
			fmt.Fprint(w, ".")
		}
		if res.Exited != "" {
			fmt.Fprintf(w, " THE PROCESS DIED: %s", res.Exited)
		}
		fmt.Fprintln(w)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
	fmt.Fprintf(w, "\ntook %.0fs\n", r.Seconds)
}

// rss is a result's peak RSS: the figure, or over the run's cap.
func (r *Report) rss(res Result) string {
	limit := mib(r.Options.RSSCap)
	switch {
	case res.Killed:
		return fmt.Sprintf("over %s (killed)", size(limit))
	case res.OverCap:
		return "over " + size(limit)
	}
	return size(res.PeakRSSMiB)
}

func size(m float64) string {
	if m >= 1024 {
		return fmt.Sprintf("%.1f GiB", m/1024)
	}
	return fmt.Sprintf("%.0f MiB", m)
}

func bytesText(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return size(mib(n))
}

func secs(ms float64) string { return fmt.Sprintf("%.1fs", ms/1000) }

func msText(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	if v >= 1000 {
		return secs(v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// counts is m as "k n, k n", by key.
func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error { return perf.WriteJSON(path, r) }
