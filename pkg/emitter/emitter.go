// Package emitter delivers heap.events to Heap's Track API in bulk requests
// and commits offsets only for events Heap accepted or that were
// dead-lettered with Heap's answer.
package emitter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/config"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// Tracker sends one bulk request.
type Tracker interface {
	Track(ctx context.Context, baseURL, appID string, evs []heap.Event) error
}

// Config is what the emitter needs.
type Config struct {
	Brokers    []string
	Topics     kafka.Topics
	Group      string // default "emitter"
	Sources    *config.Sources
	Codec      *events.Codec
	Heap       Tracker
	HeapURL    string // HEAP_API_URL; empty means each source's region default
	Log        *zap.Logger
	MaxPoll    int           // records per poll; default 5000
	MaxBatch   int           // events per request; default and at most heap.MaxBatch
	MaxBackoff time.Duration // default 30s
	ClientOpts []kgo.Opt
}

// Run consumes heap.events until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Group == "" {
		cfg.Group = "emitter"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 5000
	}
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > heap.MaxBatch {
		cfg.MaxBatch = heap.MaxBatch
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	opts := append(slices.Clone(cfg.ClientOpts),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Events),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("emitter: client: %w", err)
	}
	defer cl.Close()
	e := &loop{cfg: cfg, cl: cl}
	return e.run(ctx)
}

type loop struct {
	cfg Config
	cl  *kgo.Client
}

func (l *loop) run(ctx context.Context) error {
	for {
		fetches := l.cl.PollRecords(ctx, l.cfg.MaxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			l.cfg.Log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := l.deliver(ctx, recs); err != nil {
			if ctx.Err() != nil {
				return nil // not committed: the next owner delivers again, Heap dedups
			}
			return err
		}
		commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := l.cl.CommitRecords(commitCtx, recs...)
		cancel()
		if err != nil {
			// Redelivery after a failed commit is harmless: the idempotency key holds.
			l.cfg.Log.Warn("offset commit failed; events may be sent again", zap.Error(err))
		}
	}
}

type item struct {
	rec *kgo.Record
	ev  heap.Event
}

type batchKey struct{ url, app string }

// deliver sends every record to Heap or to heap.events.dlq. It returns only
// when that is done, or with ctx's error.
func (l *loop) deliver(ctx context.Context, recs []*kgo.Record) error {
	var dead []*kgo.Record
	groups := map[batchKey][]item{}
	var order []batchKey
	for _, r := range recs {
		ev, err := l.cfg.Codec.Decode(r.Value)
		if err != nil {
			dead = append(dead, l.deadLetter(r, "undecodable: "+err.Error()))
			continue
		}
		src, ok := l.cfg.Sources.Get(ev.SourceID)
		if !ok {
			dead = append(dead, l.deadLetter(r, "unknown source "+ev.SourceID))
			continue
		}
		k := batchKey{url: src.HeapURL(l.cfg.HeapURL), app: ev.AppID}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], item{rec: r, ev: HeapEvent(ev)})
	}
	for _, k := range order {
		for chunk := range slices.Chunk(groups[k], l.cfg.MaxBatch) {
			d, err := l.send(ctx, k, chunk)
			if err != nil {
				return err
			}
			dead = append(dead, d...)
		}
	}
	if len(dead) > 0 {
		if err := l.cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
			return fmt.Errorf("emitter: dead-letter: %w", err)
		}
	}
	return nil
}

// send delivers one chunk, retrying what may succeed later and splitting a
// rejected chunk until the bad events are isolated. It returns the dead letters.
func (l *loop) send(ctx context.Context, k batchKey, items []item) ([]*kgo.Record, error) {
	evs := make([]heap.Event, len(items))
	for i, it := range items {
		evs[i] = it.ev
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = l.cfg.MaxBackoff
	for {
		err := l.cfg.Heap.Track(ctx, k.url, k.app, evs)
		switch {
		case err == nil:
			l.cfg.Log.Debug("delivered", zap.String("app", k.app), zap.Int("events", len(evs)))
			return nil, nil
		case errors.Is(err, heap.ErrRejected):
			if len(items) == 1 {
				return []*kgo.Record{l.deadLetter(items[0].rec, err.Error())}, nil
			}
			half := len(items) / 2
			a, err := l.send(ctx, k, items[:half])
			if err != nil {
				return nil, err
			}
			b, err := l.send(ctx, k, items[half:])
			return append(a, b...), err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		wait := max(heap.RetryAfter(err), bo.NextBackOff())
		l.cfg.Log.Warn("heap track failed; retrying", zap.String("app", k.app), zap.Int("events", len(evs)),
			zap.Duration("in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (l *loop) deadLetter(r *kgo.Record, reason string) *kgo.Record {
	l.cfg.Log.Warn("dead-lettering event", zap.String("event_id", kafka.Header(r, kafka.HeaderEventID)),
		zap.String("reason", reason), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	hdrs := append(slices.Clone(r.Headers),
		kgo.RecordHeader{Key: kafka.HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: kafka.HeaderOrigin, Value: []byte(fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset))},
	)
	return &kgo.Record{Topic: l.cfg.Topics.EventsDLQ, Key: r.Key, Value: r.Value, Headers: hdrs}
}

// HeapEvent turns a mapped event into a Track API event with Heap's exact
// property names, every value cut under Heap's length limit.
func HeapEvent(e events.Event) heap.Event {
	props := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			props[k] = heap.Truncate(v)
		}
	}
	set("Campaign ID", e.CampaignID)
	set("Campaign Title", e.CampaignTitle)
	set("List ID", e.ListID)
	set("IP", e.IP)
	set("Time", heap.Timestamp(e.Time))
	set("URL", e.URL)
	set("Bounce Type", e.BounceType)
	set("Subject", e.Subject)
	set("Tags", strings.Join(e.Tags, ","))
	return heap.Event{
		Identity:       e.Identity,
		Event:          e.Name,
		Timestamp:      heap.Timestamp(e.Time),
		Properties:     props,
		IdempotencyKey: e.ID,
	}
}
