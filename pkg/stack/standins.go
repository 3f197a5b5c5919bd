package stack

// The embedded parts: whatever the environment leaves unset, Run starts in
// the process (kfake, miniredis, the Heap stand-in, and for the demo source
// a Mailchimp stand-in) and ends when it returns.

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap/heaptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/mailchimptest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// standIns are the embedded parts Run started; close ends them, last first.
type standIns struct {
	log     *zap.Logger
	closers []func()
	brokers []string
	sink    *heaptest.Sink         // nil when HEAP_API_URL is set
	mc      *mailchimptest.Service // nil unless the demo source polls it
}

func (s *standIns) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// start starts Kafka, Redis and Heap stand-ins for what env leaves unset
// and points env at them.
func (s *standIns) start(env *config.Env) error {
	s.brokers = env.KafkaBrokers
	if len(s.brokers) == 0 {
		dir := filepath.Join(env.DataDir, "kafka")
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir),
			kfake.WithLogger(kfakeLogger{s.log.Named("kfake")}))
		if err != nil {
			return fmt.Errorf("embedded kafka: %w", err)
		}
		s.closers = append(s.closers, cluster.Close)
		s.brokers = cluster.ListenAddrs()
		env.CreateTopics = true // the embedded cluster starts empty
		s.log.Info("embedded kafka", zap.Strings("brokers", s.brokers), zap.String("data_dir", dir))
	}
	if !env.Redis.Configured(env.RedisURL) {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		s.closers = append(s.closers, mr.Close)
		env.RedisURL = "redis://" + mr.Addr()
		s.log.Info("embedded redis (miniredis); set REDIS_URL to use a redis-server")
	}
	if env.HeapAPIURL == "" {
		s.sink = heaptest.NewSink(heaptest.OnAccept(logAccepted(s.log.Named("heap-sink"))))
		url, err := s.serve(s.sink)
		if err != nil {
			return fmt.Errorf("heap sink: %w", err)
		}
		env.HeapAPIURL = url
		s.log.Info("heap stand-in receiving events (set HEAP_API_URL for a real Heap)", zap.String("url", url))
	}
	return nil
}

// mailchimp points the demo source at an in-process Mailchimp stand-in
// serving the fixture campaign, so the demo shows polled opens and clicks.
func (s *standIns) mailchimp(sources *source.Sources) (*source.Sources, error) {
	s.mc = mailchimptest.NewService()
	s.mc.LoadFixtures()
	url, err := s.serve(s.mc)
	if err != nil {
		return nil, fmt.Errorf("mailchimp stand-in: %w", err)
	}
	src := sources.All()[0]
	src.MailchimpAPIKey = mailchimptest.DefaultAPIKey
	src.MailchimpAPIURL = url + "/3.0"
	src.ActivityWindow = 10 * 365 * 24 * time.Hour // the fixture campaign is from October 2026
	src.PollInterval = 30 * time.Second
	s.log.Info("demo source polls a Mailchimp stand-in", zap.String("url", src.MailchimpAPIURL))
	return source.New(src)
}

// serve serves h on a loopback port until close, and returns its URL.
func (s *standIns) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	s.closers = append(s.closers, func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}
