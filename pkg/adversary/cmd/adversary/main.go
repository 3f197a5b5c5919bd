// Command adversary is the adversarial suite behind `make attack` (package
// pkg/adversary): it attacks a real ingress process while legitimate
// webhooks flow, prints a table per attack and writes JSON. With
// -max-rss-mib or -min-legit-success it exits 1 when an attack breaks them.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/adversary"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/perf"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "adversary:", err)
		os.Exit(1)
	}
}

func run() error {
	o := adversary.DefaultOptions()
	attacks := flag.String("attacks", strings.Join(o.Attacks, ","), "attacks to run, in order: "+strings.Join(adversary.AllAttacks, ","))
	bin := flag.String("ingress", "", "the ingress binary to attack (default: go build "+adversary.IngressPackage+")")
	out := flag.String("json", "", "where to write the JSON report (none when empty)")
	maxRSS := flag.Float64("max-rss-mib", 0, "fail when an attack's peak RSS passes this many MiB (0: report only)")
	minOK := flag.Float64("min-legit-success", 0, "fail when the legitimate 2xx rate during an attack is under this fraction (0: report only)")
	capMiB := flag.Int64("rss-cap-mib", o.RSSCap>>20, "end an attack when the process's RSS passes this many MiB (reported as over it); kill the process at 1.5 times it")
	flag.DurationVar(&o.Duration, "duration", o.Duration, "length of each attack")
	flag.DurationVar(&o.Baseline, "baseline", o.Baseline, "length of the baseline (legitimate traffic alone)")
	flag.IntVar(&o.Conns, "conns", o.Conns, "connections of the slow-body, slowloris and idle attacks")
	flag.DurationVar(&o.Trickle, "trickle", o.Trickle, "slow-body and slowloris: one byte every")
	flag.DurationVar(&o.Churn, "churn", o.Churn, "slow-body-churn: each connection hangs up after this and dials again")
	flag.Int64Var(&o.SlowBodyLength, "slow-body-length", o.SlowBodyLength, "slow-body: the Content-Length declared")
	flag.IntVar(&o.MaxPosts, "max-posts", o.MaxPosts, "max-posts: concurrent posts")
	flag.IntVar(&o.MaxPostSize, "max-post-size", o.MaxPostSize, "max-posts: body bytes")
	flag.IntVar(&o.LegitRate, "legit-rate", o.LegitRate, "legitimate requests per second, of each kind")
	flag.DurationVar(&o.LegitTimeout, "legit-timeout", o.LegitTimeout, "legitimate request timeout")
	flag.Parse()
	o.Attacks = strings.Split(*attacks, ",")
	o.RSSCap = *capMiB << 20

	ctx, stop := service.SignalContext()
	defer stop()
	env, err := perf.Setup(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	if *bin == "" {
		if *bin, err = adversary.Build(ctx, env.Dir); err != nil {
			return err
		}
	}
	rep, err := adversary.Run(ctx, env, *bin, o, os.Stderr)
	if err != nil {
		return err
	}
	rep.Failures = rep.Check(*maxRSS, *minOK)
	rep.Print(os.Stdout)
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", *out)
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%d bound(s) broken", len(rep.Failures))
	}
	return nil
}
