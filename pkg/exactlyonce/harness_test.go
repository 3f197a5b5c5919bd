package exactlyonce_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/exactlyonce"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka/kafkatest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/redisconn/redistest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport/child"
)

// TestMain lets the test binary run as a mapper or an emitter process, so
// the fault tests can kill them with SIGKILL, as an orchestrator would.
// EO_RELEASE picks the build a child plays (versions_test.go) and
// EO_LOG_LEVEL its log level (default warn).
func TestMain(m *testing.M) {
	testsupport.RunRole(map[string]func() int{
		"mapper":  func() int { return runRole("mapper") },
		"emitter": func() int { return runRole("emitter") },
	})
	goleak.VerifyTestMain(m)
}

// runRole is a mapper or emitter process, as the service runs it.
func runRole(role string) int {
	env, err := config.LoadEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sources, err := source.Load(env.SourcesFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, _ := service.NewLogger(cmp.Or(os.Getenv("EO_LOG_LEVEL"), "warn"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	d, err := service.Open(ctx, env, sources, log, env.KafkaBrokers, role)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer d.Close()
	if err := useRelease(ctx, d); err != nil { // rolling_test.go
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch role {
	case "mapper":
		err = service.Mapper(ctx, d)
	case "emitter":
		err = service.Emitter(ctx, d)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role, err)
		return 1
	}
	return 0
}

// proc runs a role as a child process and restarts it whenever it dies
// until stopped: a crash loop as Kubernetes would run it.
type proc struct {
	role   string
	env    []string
	logf   *os.File
	mu     sync.Mutex
	cur    *child.Proc // the running process; nil before the first or after a failed start
	stop   bool
	starts int
	kills  int
	// hung counts SIGTERMs the process did not finish within 30 s (a
	// graceful shutdown that hangs), after which it was killed.
	hung int
	done chan struct{}
}

func startProc(t *testing.T, role string, env []string) *proc {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), role+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{role: role, env: env, logf: f, done: make(chan struct{})}
	go p.loop()
	t.Cleanup(func() {
		p.stopAndWait()
		if t.Failed() || os.Getenv("EO_LOGS") != "" {
			t.Logf("%s log tail:\n%s", p.name(), child.Tail(f, 4000))
		}
		f.Close()
	})
	return p
}

func (p *proc) loop() {
	defer close(p.done)
	for {
		p.mu.Lock()
		if p.stop {
			p.mu.Unlock()
			return
		}
		c, err := testsupport.ExecRole(p.role, p.logf, p.env)
		p.cur = c
		p.starts++
		p.mu.Unlock()
		if err == nil {
			<-c.Done()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// count counts the log lines of all the role's processes that contain s.
func (p *proc) count(s string) int {
	b, _ := os.ReadFile(p.logf.Name())
	return strings.Count(string(b), s)
}

// name is the role and, when set, the instance id.
func (p *proc) name() string {
	for _, e := range p.env {
		if id, ok := strings.CutPrefix(e, "INSTANCE_ID="); ok {
			return p.role + " " + id
		}
	}
	return p.role
}

// kill SIGKILLs the running process; loop starts a new one.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.stop {
		p.cur.Kill()
		p.kills++
	}
}

// stopAndWait ends the crash loop: SIGTERM to the running process, SIGKILL
// after 30 s (counted as hung).
func (p *proc) stopAndWait() {
	p.mu.Lock()
	if p.stop {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.stop = true
	c := p.cur
	p.mu.Unlock()
	if c != nil && c.Stop(30*time.Second) {
		p.mu.Lock()
		p.hung++
		p.mu.Unlock()
	}
	<-p.done
}

// scenario is one fault run.
type scenario struct {
	events        int
	mapperKills   int
	emitterKills  int
	heapFaults    bool // 15% 5xx, 10% 429 with Retry-After, 5% timeouts
	poison        bool // one event Heap always refuses with 400
	redisRestart  bool
	brokerRestart bool
}

// cluster is the Kafka a scenario runs on: kfake persisted to disk (so it
// can restart), or the real broker of KAFKA_BROKERS.
type cluster struct {
	brokers []string
	restart func(t *testing.T)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if kafkatest.Real() {
		return &cluster{brokers: kafkatest.Brokers(t), restart: func(t *testing.T) {
			cmd := os.Getenv("KAFKA_RESTART_CMD")
			if cmd == "" {
				cmd = "../../.ci/kafka.sh restart"
			}
			out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("restart broker (%s): %v\n%s", cmd, err, out)
			}
		}}
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir)}
	var mu sync.Mutex
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mu.Lock(); c.Close(); mu.Unlock() })
	return &cluster{brokers: c.ListenAddrs(), restart: func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		c.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err = kfake.NewCluster(opts...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("restart kfake: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}}
}

const poisonEmail = "poison@example.com"

// inputs generates n events over four sources and a thousand addresses:
// Mandrill opens and clicks, and every tenth a Reports API activity member
// of a campaign published first (so the mapper looks titles up in Redis);
// the poison address once when asked.
func inputs(n int, poison bool) []exactlyonce.Input {
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	var out []exactlyonce.Input
	for s := range 4 {
		raw := fmt.Sprintf(`{"id":"camp-%d","type":"regular","status":"sent","send_time":"2026-10-01T00:00:00+00:00","recipients":{"list_id":"list-%d"},"settings":{"title":"Campaign %d"}}`, s, s, s)
		out = append(out, exactlyonce.Input{Source: fmt.Sprintf("s%d", s), Kind: mailchimp.KindCampaign, Raw: []byte(raw)})
	}
	for i := range n {
		email := fmt.Sprintf("user%d@example.com", i%1000)
		if poison && i == n/2 {
			email = poisonEmail
		}
		src := fmt.Sprintf("s%d", i%4)
		at := base.Add(time.Duration(i) * time.Second)
		if i%10 == 9 {
			raw := fmt.Sprintf(`{"campaign_id":"camp-%d","list_id":"list-%d","email_address":%q,"activity":[{"action":"open","timestamp":%q,"ip":"198.51.100.%d"}]}`,
				i%4, i%4, email, at.Format(time.RFC3339), i%250)
			out = append(out, exactlyonce.Input{Source: src, Kind: mailchimp.KindEmailActivity, Raw: []byte(raw)})
			continue
		}
		ev, url := "open", ""
		if i%3 == 0 {
			ev, url = "click", fmt.Sprintf(`,"url":"https://shop.example/p/%d"`, i)
		}
		raw := fmt.Sprintf(`{"event":%q,"ts":%d,"_id":"msg-%d","ip":"192.0.2.%d"%s,"msg":{"_id":"msg-%d","ts":%d,"email":%q,"subject":"Order %d","tags":["t%d"]}}`,
			ev, at.Unix(), i, i%250, url, i, base.Unix(), email, i, i%5)
		out = append(out, exactlyonce.Input{Source: src, Kind: mailchimp.KindMandrillEvent, Raw: []byte(raw)})
	}
	return out
}

// collector keeps the dead letters of heap.events.dlq as they arrive.
type collector struct {
	mu   sync.Mutex
	dead []exactlyonce.DeadLetter
}

func collect(ctx context.Context, t *testing.T, brokers []string, topic string, codec *events.Codec) *collector {
	c := &collector{}
	tail(ctx, t, brokers, func(r *kgo.Record) {
		id := kafka.Header(r, kafka.HeaderEventID)
		if e, err := codec.Decode(r.Value); err == nil {
			id = e.ID
		}
		c.mu.Lock()
		c.dead = append(c.dead, exactlyonce.DeadLetter{EventID: id, Reason: kafka.Header(r, kafka.HeaderReason)})
		c.mu.Unlock()
	}, topic)
	return c
}

// tail hands each committed record of topics, from their start, to fn in a
// goroutine that runs until ctx ends; t's cleanup waits for it.
func tail(ctx context.Context, t *testing.T, brokers []string, fn func(*kgo.Record), topics ...string) {
	t.Helper()
	cl, err := kgo.NewClient(append(kafkatest.Opts(t, brokers), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(fn)
		}
	}()
	t.Cleanup(func() { <-done; cl.Close() })
}

func (c *collector) all() []exactlyonce.DeadLetter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]exactlyonce.DeadLetter(nil), c.dead...)
}

func delivered(sink *heaptest.Sink) []exactlyonce.Delivered {
	var out []exactlyonce.Delivered
	for _, a := range sink.Accepted() {
		out = append(out, exactlyonce.Delivered{AppID: a.AppID, Event: a.Event})
	}
	return out
}

// ensureTopics creates the pipeline's topics under prefix.
func ensureTopics(t *testing.T, brokers []string, prefix string, partitions int32) kafka.Topics {
	t.Helper()
	return kafkatest.TopicsFor(t, brokers, prefix, partitions)
}

// writeSources writes the SOURCES_FILE of the four sources inputs uses.
func writeSources(t *testing.T, prefix string) (string, *source.Sources) {
	t.Helper()
	var sourceList []source.Source
	var yaml strings.Builder
	yaml.WriteString("sources:\n")
	for i := range 4 {
		s := source.Source{ID: fmt.Sprintf("s%d", i), HeapAppID: fmt.Sprintf("%sapp%d", prefix, i)}
		sourceList = append(sourceList, s)
		fmt.Fprintf(&yaml, "  - {id: %s, heap_app_id: %q}\n", s.ID, s.HeapAppID)
	}
	sourcesFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(sourcesFile, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sources, err := source.New(sourceList...)
	if err != nil {
		t.Fatal(err)
	}
	return sourcesFile, sources
}

// writeReport logs a run's summary and appends it to EO_REPORT when set.
func writeReport(t *testing.T, summary map[string]any) {
	b, _ := json.Marshal(summary)
	t.Logf("report: %s", b)
	if path := os.Getenv("EO_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Write(append(b, '\n'))
			f.Close()
		}
	}
}

// run executes a scenario and checks the invariant; it writes the report.
func run(t *testing.T, sc scenario) {
	testsupport.Integration(t, "runs the mapper and emitter as child processes")
	kc := newCluster(t)
	prefix := kafkatest.Prefix(t)
	topics := ensureTopics(t, kc.brokers, prefix, 3)
	var redisURL string
	var redisSrv *redistest.Server
	if sc.redisRestart {
		redisSrv = redistest.NewServer(t)
		redisURL = redisSrv.URL
	} else {
		redisURL = redistest.URL(t)
	}

	sourcesFile, sources := writeSources(t, prefix)
	var emitterProc atomic.Pointer[proc]
	sink, faults := faultyHeap(t, sc, &emitterProc)

	env := []string{
		"KAFKA_BROKERS=" + strings.Join(kc.brokers, ","),
		"TOPIC_PREFIX=" + prefix,
		"REDIS_URL=" + redisURL,
		"HEAP_API_URL=" + sink.URL,
		"HEAP_TIMEOUT=1s",
		"SOURCES_FILE=" + sourcesFile,
		"INSTANCE_ID=" + prefix + "1",
		"ADMIN_ADDR=127.0.0.1:0",
	}
	in := inputs(sc.events, sc.poison)
	expected, err := exactlyonce.Expected(sources, in)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := events.NewCodec()
	ctx, cancel := context.WithCancel(context.Background())
	dead := collect(ctx, t, kc.brokers, topics.EventsDLQ, codec)
	defer cancel()

	mapperProc := startProc(t, "mapper", env)
	emitterProc.Store(startProc(t, "emitter", env))

	prod, err := kgo.NewClient(kafkatest.Opts(t, kc.brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	start := time.Now()
	feedFaults(t, sc, kc, prod, topics.Raw, in, mapperProc, redisSrv)

	awaitDelivered(expected, sink.Sink, dead, 5*time.Minute)
	elapsed := time.Since(start)
	time.Sleep(time.Second) // a late double would show now
	mapperProc.stopAndWait()
	emitterProc.Load().stopAndWait()
	rep := exactlyonce.Check(expected, delivered(sink.Sink), dead.all())
	st := sink.Stats()
	em := emitterProc.Load()
	writeReport(t, map[string]any{
		"test": t.Name(), "kafka": kafkatest.Name(),
		"inputs": len(in), "expected": rep.Expected, "delivered": rep.Delivered, "dead_lettered": rep.DeadLettered,
		"resent_then_deduplicated_by_heap": st.Duplicates, "heap_requests": st.Requests, "heap_faults_injected": faults.Load(),
		"heap_429_for_limits": st.Throttled, "mapper_kills": mapperProc.kills, "mapper_starts": mapperProc.starts,
		"emitter_kills": em.kills, "emitter_starts": em.starts,
		"seconds": elapsed.Round(100 * time.Millisecond).Seconds(), "ok": rep.OK(),
		"mapper_batches_aborted_and_retried": mapperProc.count("batch aborted"),
		"emitter_retries_logged":             em.count("retrying"),
	})
	checkScenario(t, sc, rep, st, mapperProc, em)
}

// faultyHeap is the Heap stand-in of a scenario: it refuses the poison
// event, injects the scenario's faults (counted), and SIGKILLs the emitter
// as the scenario asks.
func faultyHeap(t *testing.T, sc scenario, emitterProc *atomic.Pointer[proc]) (*heaptest.Server, *atomic.Int64) {
	var faults, requests, emitterKillsLeft atomic.Int64
	emitterKillsLeft.Store(int64(sc.emitterKills))
	rng := rand.New(rand.NewPCG(1, 2))
	var rngMu sync.Mutex
	sink := heaptest.NewServer(t,
		heaptest.FaultFunc(func(req heaptest.Request) *heaptest.Fault {
			for _, e := range req.Events {
				if sc.poison && e.Identity == poisonEmail {
					return &heaptest.Fault{Status: 400, Body: `{"error":"identity refused"}`}
				}
			}
			if !sc.heapFaults {
				return nil
			}
			rngMu.Lock()
			r := rng.Float64()
			rngMu.Unlock()
			switch {
			case r < 0.15:
				faults.Add(1)
				return &heaptest.Fault{Status: 503, Body: "unavailable"}
			case r < 0.25:
				faults.Add(1)
				return &heaptest.Fault{Status: 429, RetryAfter: "1"}
			case r < 0.30:
				faults.Add(1)
				return &heaptest.Fault{Status: 200, Delay: 1500 * time.Millisecond}
			}
			return nil
		}),
		heaptest.OnAccept(func(string, []heaptest.Event) {
			// Kill the emitter after Heap kept a batch and before its 2xx
			// reaches it: the offsets of that batch are not committed.
			if requests.Add(1)%5 == 0 && emitterKillsLeft.Add(-1) >= 0 {
				if p := emitterProc.Load(); p != nil {
					p.kill()
				}
			}
		}),
	)
	return sink, &faults
}

// feedFaults produces the input to raw in ten chunks, with the scenario's
// mapper kills, Redis restart or broker restart between them, then the
// mapper kills past the input.
func feedFaults(t *testing.T, sc scenario, kc *cluster, prod *kgo.Client, raw string, in []exactlyonce.Input, mapperProc *proc, redisSrv *redistest.Server) {
	t.Helper()
	var restarted sync.WaitGroup
	const chunks = 10
	for c := range chunks {
		produceChunk(t, prod, c, rawRecords(raw, in[c*len(in)/chunks:(c+1)*len(in)/chunks]))
		switch {
		case sc.mapperKills > 0 && c%2 == 1 && c/2 < sc.mapperKills:
			time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
			mapperProc.kill()
		case sc.redisRestart && c == chunks/2:
			// Down for 3 s while input keeps arriving.
			restarted.Add(1)
			go func() { defer restarted.Done(); redisSrv.Restart(t, 3*time.Second) }()
		case sc.brokerRestart && c == chunks/2:
			kc.restart(t)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Extra kills past the input, while the mapper still works through it.
	for k := chunks / 2; k < sc.mapperKills; k++ {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		mapperProc.kill()
	}
	restarted.Wait()
}

// rawRecords are inputs as ingress writes them to mailchimp.raw.
func rawRecords(raw string, in []exactlyonce.Input) []*kgo.Record {
	var recs []*kgo.Record
	for _, i := range in {
		recs = append(recs, &kgo.Record{Topic: raw, Key: []byte(i.Source), Value: i.Raw, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderSource, Value: []byte(i.Source)},
			{Key: kafka.HeaderKind, Value: []byte(i.Kind)},
			{Key: kafka.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		}})
	}
	return recs
}

// produceChunk produces chunk c's records, failing t after 60 s.
func produceChunk(t *testing.T, prod *kgo.Client, c int, recs []*kgo.Record) {
	t.Helper()
	pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := prod.ProduceSync(pctx, recs...).FirstErr()
	pcancel()
	if err != nil {
		t.Fatalf("produce chunk %d: %v", c, err)
	}
}

// awaitDelivered waits until nothing expected is missing, or within passes.
func awaitDelivered(expected map[string]events.Event, sink *heaptest.Sink, dead *collector, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		rep := exactlyonce.Check(expected, delivered(sink), dead.all())
		if len(rep.Missing) == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkScenario fails t on what a scenario must show.
func checkScenario(t *testing.T, sc scenario, rep exactlyonce.Report, st heaptest.Stats, mapperProc, emitterProc *proc) {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("exactly-once violated: %s", rep)
	}
	if st.Throttled != 0 {
		t.Errorf("the stand-in refused %d requests for going over Heap's limits", st.Throttled)
	}
	if sc.poison && rep.DeadLettered != 1 {
		t.Errorf("%d dead-lettered, want the poison event alone", rep.DeadLettered)
	}
	if !sc.poison && rep.DeadLettered != 0 {
		t.Errorf("%d dead-lettered without a poison event", rep.DeadLettered)
	}
	if sc.mapperKills > 0 && mapperProc.kills < sc.mapperKills {
		t.Errorf("mapper killed %d times, want %d", mapperProc.kills, sc.mapperKills)
	}
	if sc.emitterKills > 0 && emitterProc.kills == 0 {
		t.Error("the emitter was never killed")
	}
	if n := mapperProc.hung + emitterProc.hung; n != 0 {
		t.Errorf("%d SIGTERMed processes did not exit within 30 s", n)
	}
}
