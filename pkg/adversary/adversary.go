// Package adversary is the adversarial suite behind `make attack`: it runs
// the real ingress binary on the harness's Kafka and Redis (pkg/perf's
// backends), attacks it the ways an internet-facing webhook endpoint is
// attacked (bodies that never finish, headers that never finish, the
// largest bodies the limits allow, idle connections held open) while a
// legitimate sender posts signed Mandrill batches and audience webhooks at
// a steady rate, and reports per attack the process's peak RSS, the
// legitimate traffic's success rate and latency, and when the server hung
// up on the attack's connections.
//
// Each attack gets a fresh ingress process, so its peak is its own and an
// attack that takes the process down spoils no other. Like the benchmarks,
// it reports and asserts nothing, unless given bounds (Check).
package adversary

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/perf"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Options are a run's settings.
type Options struct {
	Attacks        []string      `json:"attacks"`
	Duration       time.Duration `json:"duration"` // each attack
	Baseline       time.Duration `json:"baseline"` // the baseline's own length
	Conns          int           `json:"conns"`    // slow-body, slowloris and idle connections
	Trickle        time.Duration `json:"trickle"`  // slow-body and slowloris: a byte every
	Churn          time.Duration `json:"churn"`    // slow-body-churn: each connection's life
	SlowBodyLength int64         `json:"slow_body_length"`
	MaxPosts       int           `json:"max_posts"` // concurrent maximum-size posts
	MaxPostSize    int           `json:"max_post_size"`
	LegitRate      int           `json:"legit_rate"` // per second, of each kind
	LegitTimeout   time.Duration `json:"legit_timeout"`
	// RSSCap ends an attack when the process's RSS passes it (reported as
	// over the cap); at one and a half times it the process is killed.
	RSSCap int64 `json:"rss_cap"`
}

// DefaultOptions fit a CI job: about two minutes in all.
func DefaultOptions() Options {
	return Options{
		Attacks:        AllAttacks,
		Duration:       20 * time.Second,
		Baseline:       5 * time.Second,
		Conns:          500,
		Trickle:        3 * time.Second,
		Churn:          2 * time.Second,
		SlowBodyLength: 30_000_000,
		MaxPosts:       12,
		MaxPostSize:    31 << 20,
		LegitRate:      5,
		LegitTimeout:   10 * time.Second, // Mailchimp's own
		RSSCap:         4 << 30,
	}
}

// Run attacks a fresh ingress process (bin) per attack on env's backends,
// logging progress to log.
func Run(ctx context.Context, env *perf.Env, bin string, o Options, log io.Writer) (*Report, error) {
	src := Source()
	attacks := make([]attack, len(o.Attacks))
	for i, name := range o.Attacks {
		a, err := o.attack(name, src.ID)
		if err != nil {
			return nil, err
		}
		attacks[i] = a
	}
	p, err := newPayloads(src)
	if err != nil {
		return nil, err
	}
	sources, err := env.WriteSources("adversary", []source.Source{src})
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Machine: machine(), Kafka: env.KafkaDesc, Redis: env.RedisDesc, Ingress: bin, Options: o}
	prefix := "adv-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-"
	for i, a := range attacks {
		fmt.Fprintf(log, "adversary: %s: %s\n", a.name, a.about)
		res, err := runOne(ctx, env, bin, fmt.Sprintf("ingress-%d-%s", i, a.name), sources, prefix, a, p, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.name, err)
		}
		fmt.Fprintf(log, "adversary: %s: peak RSS %s, legit %s\n", a.name, rep.rss(res), res.legitText())
		rep.Results = append(rep.Results, res)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

// runOne starts an ingress process, warms it up, then runs the attack and
// the legitimate senders together for the attack's length (shorter when
// the RSS cap ends it) and gathers the figures.
func runOne(ctx context.Context, env *perf.Env, bin, name, sources, prefix string, a attack, p *payloads, o Options) (Result, error) {
	in, err := StartIngress(ctx, env, bin, name, sources, prefix)
	if err != nil {
		return Result{}, err
	}
	defer in.Stop()
	if err := warmUp(ctx, p, in.URL(), o.LegitTimeout); err != nil {
		return Result{}, err
	}
	dur := o.Duration
	if a.name == Baseline {
		dur = o.Baseline
	}
	actx, stopAttack := context.WithTimeout(ctx, dur)
	defer stopAttack()
	s := newSampler(in.Pid(), o.RSSCap, stopAttack, in.Kill)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); s.run(sctx) }()

	start := time.Now()
	t := &tally{}
	attacked := make(chan struct{})
	go func() { defer close(attacked); a.run(actx, in.Addr, t) }()
	legit := make(chan *legitTally, 2)
	for _, kind := range []string{KindMandrill, KindAudience} {
		go func() { legit <- sendAtRate(actx, p, kind, in.URL(), o.LegitRate, o.LegitTimeout) }()
	}
	<-actx.Done()
	length := time.Since(start)
	<-attacked
	tallies := []*legitTally{<-legit, <-legit}
	slices.SortFunc(tallies, func(a, b *legitTally) int { return strings.Compare(a.kind, b.kind) })
	stopSampling()
	<-sampled
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	res := result(a, length, s, t, tallies)
	if err := in.Exited(); err != nil {
		res.Exited = err.Error()
	}
	return res, nil
}

// result gathers one attack's figures.
func result(a attack, length time.Duration, s *sampler, t *tally, legit []*legitTally) Result {
	m := s.result()
	r := Result{Attack: a.name, About: a.about, Seconds: length.Seconds(), PeakRSSMiB: mib(m.peak), PeakVirtMiB: mib(m.virt),
		OverCap: m.capped, Killed: m.killed, RSS: m.samples}
	if a.name != Baseline {
		r.Conns = t.stats()
	}
	var all []time.Duration
	for _, l := range legit {
		ls := l.stats()
		r.Legit = append(r.Legit, ls)
		r.LegitSent += ls.Sent
		r.LegitOK += ls.OK
		all = append(all, l.lat...)
	}
	if r.LegitSent > 0 {
		r.LegitSuccess = float64(r.LegitOK) / float64(r.LegitSent)
	}
	r.LegitP50Ms, r.LegitP99Ms = ms(percentile(all, 0.50)), ms(percentile(all, 0.99))
	return r
}
