package exactlyonce_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/eventstest"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/service"
	"github.com/mailchimp-heap/mailchimp-heap/schemas"
)

// The rolling-upgrade tests run builds of two schema versions on the same
// topics: version 1 (schemas/) and version 2 (eventstest.V2, one added
// optional field), a child process choosing its build by EO_RELEASE:
//
//   - v1: the build before version 2 existed: writes and lists version 1
//     only (the codec service.Open builds);
//   - A:  writes version 1 and lists version 2 too: in single-object
//     encoding a reader knows only the versions it lists, so this release
//     must be everywhere before a writer of version 2 starts;
//   - B:  writes version 2 (events.WriteVersion) and lists both.
//
// Production code knows nothing of releases: useRelease replaces the
// codec service.Open built, as the build of that release would have.
func useRelease(ctx context.Context, d *service.Deps) error {
	rel := os.Getenv("EO_RELEASE")
	var opts []events.Option
	switch rel {
	case "":
		return nil
	case "v1": // the codec service.Open built
		fmt.Fprintf(os.Stderr, "release %s: %s\n", rel, d.Codec.Framing())
		return nil
	case "A":
		opts = []events.Option{readsV2()}
	case "B":
		opts = []events.Option{readsV2(), events.WriteVersion(eventstest.V2)}
	default:
		return fmt.Errorf("EO_RELEASE=%s: not a release (v1, A, B)", rel)
	}
	var c *events.Codec
	var err error
	if d.Env.SchemaRegistryURL == "" {
		c, err = events.NewCodec(opts...)
	} else {
		var reg *registry.Client
		e := d.Env
		if reg, err = registry.New(registry.Config{URL: e.SchemaRegistryURL, Username: e.SchemaRegistryUsername,
			Password: string(e.SchemaRegistryPassword), Token: string(e.SchemaRegistryToken), CAFile: e.SchemaRegistryCAFile}); err != nil {
			return err
		}
		c, err = events.NewRegistryCodec(ctx, events.RegistryConfig{Registry: reg,
			Subjects:     []string{d.Topics.Events + "-value", d.Topics.Pending + "-value"},
			AutoRegister: d.Env.SchemaRegistryAutoRegister}, opts...)
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", rel, err)
	}
	d.Codec = c
	fmt.Fprintf(os.Stderr, "release %s: %s\n", rel, c.Framing())
	return nil
}

func readsV2() events.Option {
	return events.Versions(append(slices.Clone(schemas.HeapEmailEventVersions), eventstest.V2)...)
}

// versionTally reads heap.events and heap.events.pending as committed and
// notes the schema version each record was written with.
type versionTally struct {
	mu       sync.Mutex
	byTopic  map[string]map[string]int // topic ("events", "pending") -> version -> records
	framings map[string]int            // "single-object" or "confluent" -> records
	events   map[string][]string       // event id -> versions of its heap.events records
	pendings map[string]string         // event id -> version of its pending record
	waiting  map[string]bool           // pending keys whose latest record is an event
	writer   func([]byte) string
}

func watchVersions(ctx context.Context, t *testing.T, brokers []string, topics kafka.Topics, registryURL string) *versionTally {
	vt := &versionTally{byTopic: map[string]map[string]int{"events": {}, "pending": {}},
		events: map[string][]string{}, pendings: map[string]string{}, waiting: map[string]bool{}, framings: map[string]int{}}
	vt.writer = writerOf(t, registryURL)
	tail(ctx, t, brokers, func(r *kgo.Record) {
		id := kafka.Header(r, kafka.HeaderEventID)
		var v string
		if r.Value != nil {
			v = vt.writer(r.Value)
		}
		vt.mu.Lock()
		switch {
		case len(r.Value) == 0:
		case r.Value[0] == 0:
			vt.framings["confluent"]++
		default:
			vt.framings["single-object"]++
		}
		switch {
		case r.Topic == topics.Events:
			vt.byTopic["events"][v]++
			vt.events[id] = append(vt.events[id], v)
		case r.Value == nil:
			delete(vt.waiting, string(r.Key))
		default:
			vt.byTopic["pending"][v]++
			vt.pendings[id] = v
			vt.waiting[string(r.Key)] = true
		}
		vt.mu.Unlock()
	}, topics.Events, topics.Pending)
	return vt
}

// writerOf names the version a value was written with: by its
// fingerprint, or by its registry id's schema.
func writerOf(t *testing.T, registryURL string) func([]byte) string {
	byFP := map[uint64]string{}
	for name, text := range map[string]string{"v1": schemas.HeapEmailEvent, "v2": eventstest.V2} {
		s, err := avro.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		byFP[avro.Fingerprint(s)] = name
	}
	var reg *registry.Client
	if registryURL != "" {
		var err error
		if reg, err = registry.New(registry.Config{URL: registryURL}); err != nil {
			t.Fatal(err)
		}
	}
	byID := map[uint32]string{}
	return func(b []byte) string {
		switch {
		case len(b) >= 10 && b[0] == 0xC3 && b[1] == 0x01:
			if v, ok := byFP[binary.LittleEndian.Uint64(b[2:10])]; ok {
				return v
			}
		case len(b) >= 5 && b[0] == 0 && reg != nil:
			id := binary.BigEndian.Uint32(b[1:5])
			if v, ok := byID[id]; ok {
				return v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if text, err := reg.Schema(ctx, int(id)); err == nil {
				if s, err := avro.Parse(text); err == nil && byFP[avro.Fingerprint(s)] != "" {
					byID[id] = byFP[avro.Fingerprint(s)]
					return byID[id]
				}
			}
		}
		return "unknown"
	}
}

func (vt *versionTally) count(topic, version string) int {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	return vt.byTopic[topic][version]
}

func (vt *versionTally) counts(topic string) map[string]int {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	return maps.Clone(vt.byTopic[topic])
}

func (vt *versionTally) framing() map[string]int {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	return maps.Clone(vt.framings)
}

// eventWriter is the version of event id's heap.events record; "" when
// none was read yet or its records disagree.
func (vt *versionTally) eventWriter(id string) string {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	vs := vt.events[id]
	if len(vs) == 0 || slices.ContainsFunc(vs, func(v string) bool { return v != vs[0] }) {
		return ""
	}
	return vs[0]
}

// mapped counts the events written to heap.events or to pending, and
// those written to heap.events.
func (vt *versionTally) mapped() (mapped, events int) {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	mapped = len(vt.events)
	for id := range vt.pendings {
		if _, ok := vt.events[id]; !ok {
			mapped++
		}
	}
	return mapped, len(vt.events)
}

// live counts the pending keys whose latest record is an event, not a
// tombstone: events neither released nor dead-lettered yet.
func (vt *versionTally) live() int {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	return len(vt.waiting)
}

// released counts the heap.events records of events that waited in
// pending, by "<pending record's version>-><heap.events record's>".
func (vt *versionTally) released() map[string]int {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	out := map[string]int{}
	for id, pv := range vt.pendings {
		for _, ev := range vt.events[id] {
			out[pv+"->"+ev]++
		}
	}
	return out
}
