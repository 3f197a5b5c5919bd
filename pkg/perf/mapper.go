package perf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mapper"
)

// mapper: the real mapper service vs a bare transactional copy loop, each
// on the same fresh backlog, passes times.
func (r *runner) mapper(ctx context.Context) error {
	n := int64(r.opts.Records)
	sessions := r.sessions()
	var rates, firsts, floors, floorsN []float64
	var settle []string
	for pass := range r.passes() {
		prefix := runPrefix(fmt.Sprintf("mapper%d", pass))
		topics, err := r.env.Topics(ctx, prefix)
		if err != nil {
			return err
		}
		// Apps of the pass's own: every event is new to the emitter's ledger.
		srcs := perfSources(fmt.Sprintf("p%ds", pass), 4, true)
		path, err := r.env.WriteSources(fmt.Sprintf("mapper-%d", pass), srcs)
		if err != nil {
			return err
		}
		if err := r.env.seedRedis(ctx, srcs, emailCount(int(n))); err != nil {
			return err
		}
		if err := r.env.produceRaw(ctx, topics.Raw, srcs, int(n)); err != nil {
			return err
		}
		floor, err := r.copyFloor(ctx, topics.Raw, prefix, n, 1)
		if err != nil {
			return fmt.Errorf("copy floor: %w", err)
		}
		floorN := floor // one session: the same loop
		if sessions > 1 {
			if floorN, err = r.copyFloor(ctx, topics.Raw, prefix, n, sessions); err != nil {
				return fmt.Errorf("copy floor, %d sessions: %w", sessions, err)
			}
		}
		dr, rss, err := r.runMapper(ctx, prefix, path, topics, n, fmt.Sprintf("mapper-%d", pass))
		if err != nil {
			return err
		}
		rate := dr.Steady
		s := fmt.Sprintf("%.2f s", dr.SteadyAfter.Seconds())
		if dr.NeverSteady {
			s = "never (done first)"
		}
		fmt.Fprintf(r.out, "perf:   mapper pass %d: %s events/s steady (group stable %s after the first commit; %s from it), floor %s (%.0f%%), %d-session floor %s (%.0f%%)\n",
			pass+1, num(rate), s, num(dr.First), num(floor), 100*rate/floor, sessions, num(floorN), 100*rate/floorN)
		rates, firsts, floors, floorsN = append(rates, rate), append(firsts, dr.First), append(floors, floor), append(floorsN, floorN)
		settle = append(settle, s)
		r.rss["mapper"] = max(r.rss["mapper"], rss)
		r.mapperRuns = append(r.mapperRuns, mapperRun{prefix, path})
	}
	rate, floor := median(rates), median(floors)
	r.add(Row{Stage: "mapper", Metric: "throughput", Unit: "events/s", Figure: rate, Floor: floor,
		FloorIs: fmt.Sprintf("bare GroupTransactSession copy loop (read_committed, %d records per transaction as the mapper's, flushed) of the same records on the same broker", mapper.DefaultMaxPoll),
		Target:  ">= 40% of floor", Met: met(rate >= 0.4*floor),
		Note: fmt.Sprintf("medians of %d passes, each the floor then the mapper on %d fresh raw records (3 Mandrill events : 1 audience webhook, 4 sources joining on a custom property: identities and campaign titles from Redis), counted once its group is stable with its %d sessions (stable after the first commit: %s); pass ratios %s",
			r.passes(), n, sessions, strings.Join(settle, ", "), ratios(rates, floors))})
	first := median(firsts)
	r.add(Row{Stage: "mapper", Metric: "throughput from the first commit", Unit: "events/s", Figure: first, Floor: floor,
		FloorIs: "the same one-session copy loop", Target: "-",
		Note: fmt.Sprintf("the same passes counted from the mapper's first commit, its sessions' start-up rebalance included; pass ratios %s", ratios(firsts, floors))})
	if sessions == 1 {
		return nil // the row above is like for like
	}
	floorN := median(floorsN)
	r.add(Row{Stage: "mapper", Metric: fmt.Sprintf("throughput vs %d copy sessions", sessions), Unit: "events/s", Figure: rate, Floor: floorN,
		FloorIs: fmt.Sprintf("the same copy loop in %d sessions of one group, as the mapper runs (MAPPER_SESSIONS)", sessions),
		Target:  "-",
		Note:    fmt.Sprintf("like for like: the issue's floor is one session; pass ratios %s", ratios(rates, floorsN))})
	return nil
}

// runMapper runs the mapper over the backlog. Its steady rate counts from
// when its group is stable with all its sessions holding partitions: the
// sessions join one after another, and on kfake (no initial rebalance
// delay) the second one's join is a rebalance of ~1 s, a good part of a
// 300k-record run and not the mapper's throughput.
func (r *runner) runMapper(ctx context.Context, prefix, sources string, topics kafka.Topics, n int64, name string) (drainRate, int64, error) {
	c, err := r.env.Start("mapper", name, map[string]string{"SOURCES_FILE": sources, "TOPIC_PREFIX": prefix})
	if err != nil {
		return drainRate{}, 0, err
	}
	var stable atomic.Bool
	waitCtx, stopWait := context.WithCancel(ctx)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		if r.env.waitGroup(waitCtx, prefix+"mapper", r.sessions()) == nil {
			stable.Store(true)
		}
	}()
	rate, err := throughput(ctx, func() (int64, error) { return r.env.committed(ctx, prefix+"mapper", topics.Raw) },
		n, time.Duration(n/200)*time.Second+90*time.Second, c.Exited, stable.Load)
	stopWait()
	<-waited
	rss, _ := c.Stop()
	return rate, rss, err
}

// copyFloor is a bare copy loop over the raw records in sessions
// GroupTransactSessions of one group, each with a transactional id of its
// own, as the mapper runs its sessions. The loops time themselves (a pass
// over in-process kfake takes a fraction of a second, too short for the
// 25 ms progress polls the services are measured with): records/s committed
// from the first commit until all n are.
func (r *runner) copyFloor(ctx context.Context, raw, prefix string, n int64, sessions int) (float64, error) {
	out := fmt.Sprintf("%sperf.copy%d", prefix, sessions)
	if _, err := r.env.Admin.CreateTopic(ctx, Partitions, -1, nil, out); err != nil {
		return 0, err
	}
	group := fmt.Sprintf("%scopy%d", prefix, sessions)
	loopCtx, cancel := context.WithTimeout(ctx, time.Duration(n/500)*time.Second+60*time.Second)
	defer cancel()
	var c copied
	c.total = n
	errs := make(chan error, sessions)
	for i := range sessions {
		var once sync.Once
		assigned := kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			once.Do(func() { c.joined(sessions) })
		})
		sess, err := kgo.NewGroupTransactSession(append(r.env.Conn.Opts("floor"), assigned,
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(raw), kgo.TransactionalID(fmt.Sprintf("%s-%d", group, i)),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.TransactionTimeout(60*time.Second), kgo.SessionTimeout(15*time.Second))...)
		if err != nil {
			return 0, err
		}
		defer sess.Close()
		go func() { errs <- copyLoop(loopCtx, sess, out, &c) }()
	}
	for range sessions {
		if err := <-errs; err != nil && !c.finished() {
			return 0, err
		}
		cancel() // all copied: the other loops stop
	}
	return c.rate()
}

// copied is the copy loops' shared count. The clock starts at the first
// commit once every session has partitions: a join's rebalance is not the
// loop's throughput.
type copied struct {
	mu     sync.Mutex
	total  int64
	n, n0  int64
	t0, t1 time.Time
	joins  int
	stable bool
}

// joined notes a session's first assignment.
func (c *copied) joined(sessions int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.joins++
	c.stable = c.joins == sessions
}

// add counts a committed transaction and reports whether all are copied.
func (c *copied) add(k int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(k)
	if c.t0.IsZero() && c.stable {
		c.t0, c.n0 = time.Now(), c.n
	}
	if c.n >= c.total && c.t1.IsZero() {
		c.t1 = time.Now()
	}
	return c.n >= c.total
}

func (c *copied) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.t1.IsZero()
}

func (c *copied) rate() (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t0.IsZero() || c.n == c.n0 {
		return 0, fmt.Errorf("all %d copied before a second committed transaction of the whole group: raise the record count", c.total)
	}
	return float64(c.n-c.n0) / c.t1.Sub(c.t0).Seconds(), nil
}

// copyLoop is the mapper's loop with the work taken out: every record is
// copied as it is, in the same transaction as its offset, flushed as the
// mapper flushes, until c says all are copied.
func copyLoop(ctx context.Context, sess *kgo.GroupTransactSession, out string, c *copied) error {
	for {
		fs := sess.PollRecords(ctx, mapper.DefaultMaxPoll)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy loop: %w", err)
		}
		if fs.IsClientClosed() {
			return errors.New("client closed")
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return err
		}
		promise := kgo.AbortingFirstErrPromise(sess.Client())
		for _, rec := range recs {
			sess.Produce(ctx, &kgo.Record{Topic: out, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}, promise.Promise())
		}
		err := sess.Client().Flush(ctx)
		if perr := promise.Err(); perr != nil {
			err = perr
		}
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		committed, endErr := sess.End(endCtx, kgo.TransactionEndTry(err == nil))
		cancel()
		if endErr != nil {
			return endErr
		}
		if committed && c.add(len(recs)) {
			return nil
		}
	}
}
