// Package replay sends records of the pipeline's topics through it again:
// Replay re-produces a time range of mailchimp.raw (the mapper maps it again)
// or heap.events (the emitter delivers it again); Redrive sends dead letters
// back where they came from. Event ids are deterministic, so both are safe to
// repeat: the emitter's ledger and Heap's idempotency key keep one copy,
// unless Replay is asked for new keys.
package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
)

// HeaderPendingSince restarts a redriven unmatched event's wait in
// heap.events.pending (the materializer reads it; RFC 3339).
const HeaderPendingSince = "pending-since"

// Options select the records to send again.
type Options struct {
	Topics kafka.Topics
	// Topic is the topic read: Replay takes Topics.Raw (the default) or
	// Topics.Events, Redrive Topics.RawDLQ or Topics.EventsDLQ.
	Topic  string
	Source string    // only records whose source is this; empty: all
	From   time.Time // only records with a timestamp at or after From; zero: from the start
	To     time.Time // and before To; zero: up to the end as it is now
	Reason string    // Redrive: only letters whose reason contains this
	// NewKeys (Replay) gives every replayed event a new id: Heap keeps a
	// second copy. The salt goes in a header the mapper mixes into ids; for
	// heap.events the events are re-encoded with salted ids.
	NewKeys bool
	DryRun  bool // count what would be sent, send nothing
	// Codec decodes events: required to replay Topics.Events (new keys are
	// set in the value), and finds the source of an event without a source
	// header.
	Codec *events.Codec
	Now   func() time.Time // stamps pending-since on redriven unmatched events; default time.Now
	// ClientOpts are the reading consumer's options (seed brokers, logger);
	// empty: the producing client's seed brokers.
	ClientOpts []kgo.Opt
}

// Result counts what a run read and sent.
type Result struct {
	Scanned  int            // records in the offset range (control records excluded)
	Matched  int            // records the filters selected
	Produced int            // records sent (0 on a dry run)
	Targets  map[string]int // matched records per destination topic
	Salt     string         // the new-keys salt, when asked
}

func (r Result) String() string {
	var ts []string
	for _, t := range slices.Sorted(maps.Keys(r.Targets)) {
		ts = append(ts, fmt.Sprintf("%s=%d", t, r.Targets[t]))
	}
	return fmt.Sprintf("scanned %d, matched %d, produced %d (%s)", r.Scanned, r.Matched, r.Produced, strings.Join(ts, ", "))
}

// Replay re-produces the selected records of a topic to the same topic,
// keeping key, value and headers and adding replay-of (where the copy came
// from). cl produces; it should be idempotent with acks=all (kgo's default).
func Replay(ctx context.Context, cl *kgo.Client, opts Options) (Result, error) {
	if opts.Topic == "" {
		opts.Topic = opts.Topics.Raw
	}
	if opts.Topic != opts.Topics.Raw && opts.Topic != opts.Topics.Events {
		return Result{}, fmt.Errorf("replay: topic %s: only %s and %s can be replayed (dead letters are redriven)", opts.Topic, opts.Topics.Raw, opts.Topics.Events)
	}
	if opts.Topic == opts.Topics.Events && opts.Codec == nil {
		return Result{}, errors.New("replay: a codec is needed for " + opts.Topic)
	}
	res := Result{Targets: map[string]int{}}
	if opts.NewKeys {
		b := make([]byte, 8)
		rand.Read(b)
		res.Salt = hex.EncodeToString(b)
	}
	err := run(ctx, cl, opts, &res, func(r *kgo.Record) (*kgo.Record, error) {
		if !opts.matchSource(r) {
			return nil, nil
		}
		out := &kgo.Record{Topic: opts.Topic, Key: r.Key, Value: r.Value, Headers: without(r.Headers, kafka.HeaderReplayOf, kafka.HeaderReplaySalt)}
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: kafka.HeaderReplayOf, Value: []byte(origin(r))})
		if res.Salt == "" {
			return out, nil
		}
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: kafka.HeaderReplaySalt, Value: []byte(res.Salt)})
		if opts.Topic == opts.Topics.Events {
			// Already mapped: the id is in the value, so salt it there.
			e, err := opts.Codec.Decode(r.Value)
			if err != nil {
				return nil, fmt.Errorf("replay: %s: %w", origin(r), err)
			}
			e.ID = events.ID(e.ID, "replay-salt", res.Salt)
			if out.Value, err = opts.Codec.Encode(e); err != nil {
				return nil, fmt.Errorf("replay: %s: %w", origin(r), err)
			}
			out.Headers = set(out.Headers, kafka.HeaderEventID, e.ID)
		}
		return out, nil
	})
	return res, err
}

// Redrive sends the selected dead letters back to the topic they came from
// (their origin header): mailchimp.raw for raw letters, heap.events for
// events Heap refused, heap.events.pending for unmatched events, whose wait
// restarts now. Reason and origin are dropped; redriven-from says which
// letter a record was.
func Redrive(ctx context.Context, cl *kgo.Client, opts Options) (Result, error) {
	var fallback string
	allowed := map[string]bool{}
	switch opts.Topic {
	case opts.Topics.RawDLQ:
		fallback = opts.Topics.Raw
		allowed[opts.Topics.Raw] = true
	case opts.Topics.EventsDLQ:
		fallback = opts.Topics.Events
		allowed[opts.Topics.Events], allowed[opts.Topics.Pending] = true, true
	default:
		return Result{}, fmt.Errorf("redrive: topic %q: only %s and %s hold dead letters", opts.Topic, opts.Topics.RawDLQ, opts.Topics.EventsDLQ)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	res := Result{Targets: map[string]int{}}
	err := run(ctx, cl, opts, &res, func(r *kgo.Record) (*kgo.Record, error) {
		if !opts.matchSource(r) || !strings.Contains(kafka.Header(r, kafka.HeaderReason), opts.Reason) {
			return nil, nil
		}
		// An origin outside the pipeline's topics (or none: the mapper
		// dead-letters events whose identity Heap can never take without
		// one) goes where that kind of letter starts.
		target := originTopic(kafka.Header(r, kafka.HeaderOrigin))
		if !allowed[target] {
			target = fallback
		}
		hdrs := without(r.Headers, kafka.HeaderReason, kafka.HeaderOrigin, kafka.HeaderRedrivenFrom, HeaderPendingSince)
		hdrs = append(hdrs, kgo.RecordHeader{Key: kafka.HeaderRedrivenFrom, Value: []byte(origin(r))})
		if target == opts.Topics.Pending {
			hdrs = append(hdrs, kgo.RecordHeader{Key: HeaderPendingSince, Value: []byte(opts.Now().UTC().Format(time.RFC3339Nano))})
		}
		return &kgo.Record{Topic: target, Key: r.Key, Value: r.Value, Headers: hdrs}, nil
	})
	return res, err
}

func (o Options) matchSource(r *kgo.Record) bool {
	if o.Source == "" {
		return true
	}
	src := kafka.Header(r, kafka.HeaderSource)
	if src == "" && o.Codec != nil {
		if e, err := o.Codec.Decode(r.Value); err == nil {
			src = e.SourceID
		}
	}
	return src == o.Source
}

// run reads opts.Topic's committed records in [From, To) as they are now,
// lets pick choose and build each copy, and produces the copies.
func run(ctx context.Context, cl *kgo.Client, opts Options, res *Result, pick func(*kgo.Record) (*kgo.Record, error)) error {
	ranges, err := offsetRanges(ctx, cl, opts.Topic, opts.From, opts.To)
	if err != nil {
		return err
	}
	if len(ranges) == 0 {
		return nil
	}
	start := map[string]map[int32]kgo.Offset{opts.Topic: {}}
	for p, r := range ranges {
		start[opts.Topic][p] = kgo.NewOffset().At(r[0])
	}
	// A consumer of its own: the caller's client produces, and may already
	// consume something else. Control records are kept so the last offset of
	// a range is always seen, even when it is a transaction marker.
	copts := opts.ClientOpts
	if len(copts) == 0 {
		copts = []kgo.Opt{kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...)}
	}
	cons, err := kgo.NewClient(append(slices.Clone(copts),
		kgo.ConsumePartitions(start), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return fmt.Errorf("replay: consumer: %w", err)
	}
	defer cons.Close()
	var batch []*kgo.Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !opts.DryRun {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				return fmt.Errorf("replay: produce: %w", err)
			}
			res.Produced += len(batch)
		}
		batch = batch[:0]
		return nil
	}
	for len(ranges) > 0 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("replay: %s: %w", opts.Topic, ctx.Err())
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("replay: fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return ferr
		}
		for _, r := range fs.Records() {
			rg, ok := ranges[r.Partition]
			if !ok {
				continue
			}
			if r.Offset >= rg[1] {
				// Past the range (its last offset compacted away): records
				// produced since, our own copies among them, are not read.
				delete(ranges, r.Partition)
				continue
			}
			if r.Offset == rg[1]-1 {
				delete(ranges, r.Partition)
			}
			if r.Attrs.IsControl() {
				continue
			}
			res.Scanned++
			if (!opts.From.IsZero() && r.Timestamp.Before(opts.From)) || (!opts.To.IsZero() && !r.Timestamp.Before(opts.To)) {
				continue
			}
			out, err := pick(r)
			if err != nil {
				return err
			}
			if out == nil {
				continue
			}
			res.Matched++
			res.Targets[out.Topic]++
			if batch = append(batch, out); len(batch) >= 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// offsetRanges returns each partition's [first, end) offsets to read: from
// the first record at or after from (or the log start) to the first at or
// after to (or the last stable offset), never past the last stable offset.
// Empty ranges are left out.
func offsetRanges(ctx context.Context, cl *kgo.Client, topic string, from, to time.Time) (map[int32][2]int64, error) {
	adm := kadm.NewClient(cl)
	list := func(what string, fn func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		l, err := fn()
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("replay: %s offsets of %s: %w", what, topic, err)
		}
		if _, ok := l[topic]; !ok {
			return nil, fmt.Errorf("replay: topic %s does not exist", topic)
		}
		return l, nil
	}
	ends, err := list("end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return nil, err
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) {
		if from.IsZero() {
			return adm.ListStartOffsets(ctx, topic)
		}
		return adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	})
	if err != nil {
		return nil, err
	}
	var stops kadm.ListedOffsets
	if !to.IsZero() {
		if stops, err = list("stop", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, to.UnixMilli(), topic) }); err != nil {
			return nil, err
		}
	}
	out := map[int32][2]int64{}
	for p, e := range ends[topic] {
		s, ok := starts.Lookup(topic, p)
		if !ok || s.Offset < 0 {
			continue
		}
		end := e.Offset
		if st, ok := stops.Lookup(topic, p); ok && st.Offset >= 0 && st.Offset < end {
			end = st.Offset
		}
		if s.Offset < end {
			out[p] = [2]int64{s.Offset, end}
		}
	}
	return out, nil
}

// origin names a record as topic/partition/offset.
func origin(r *kgo.Record) string {
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// originTopic is the topic of an origin header: topic/partition/offset, or
// a bare topic (the materializer's unmatched letters).
func originTopic(o string) string {
	parts := strings.Split(o, "/")
	if len(parts) >= 3 {
		if _, err := strconv.ParseInt(parts[len(parts)-1], 10, 64); err == nil {
			return strings.Join(parts[:len(parts)-2], "/")
		}
	}
	return o
}

func without(hs []kgo.RecordHeader, keys ...string) []kgo.RecordHeader {
	return slices.DeleteFunc(slices.Clone(hs), func(h kgo.RecordHeader) bool { return slices.Contains(keys, h.Key) })
}

func set(hs []kgo.RecordHeader, key, value string) []kgo.RecordHeader {
	return append(without(hs, key), kgo.RecordHeader{Key: key, Value: []byte(value)})
}
