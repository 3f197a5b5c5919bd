package events

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
)

// Registry is the part of a schema registry's REST API the codec uses
// (pkg/registry is one). An error for something the registry does not
// have should have a NotFound() bool method saying so; any other error is
// taken as the registry being unavailable.
type Registry interface {
	// Register registers schema under subject, or finds it registered,
	// and returns its id.
	Register(ctx context.Context, subject, schema string) (int, error)
	// Lookup returns the id of schema, registered under subject.
	Lookup(ctx context.Context, subject, schema string) (int, error)
	// Schema returns the schema with id.
	Schema(ctx context.Context, id int) (string, error)
}

// RegistryConfig is how a codec uses a schema registry.
type RegistryConfig struct {
	Registry Registry
	// Subjects the written schema (the current one, or WriteVersion's)
	// belongs under: by the topic-name strategy, "<topic>-value" for each
	// topic written. The first one's id is the one written.
	Subjects []string
	// AutoRegister registers the written schema under each subject;
	// otherwise each must hold it already.
	AutoRegister bool
}

// registryCache is a codec's registry and what it learned from it. Ids are
// never reused by a registry, so what an id resolved to is kept for good.
// An id the registry did not have is asked again by Learn after missAgain
// (a registry replica may lag its writer); Decode only asks about an id it
// never met, so after Learn it needs no network.
type registryCache struct {
	client  Registry
	writeID uint32

	mu     sync.RWMutex
	ids    map[uint32]*version
	failed map[uint32]failure
}

type failure struct {
	err   error
	until time.Time // zero: for good
}

// missAgain is how long an id the registry did not have is not asked
// about again; a variable for tests.
var missAgain = time.Minute

const registryTimeout = 10 * time.Second

// NewRegistryCodec builds a codec writing the Confluent wire format: it
// registers the current schema (or WriteVersion's) under each subject (or,
// without AutoRegister, finds it there) and writes the first subject's id. It
// reads what NewCodec's codecs read, and any schema id the registry
// resolves to a schema the current one can read.
func NewRegistryCodec(ctx context.Context, cfg RegistryConfig, opts ...Option) (*Codec, error) {
	if cfg.Registry == nil || len(cfg.Subjects) == 0 {
		return nil, errors.New("events: a registry codec needs a registry and at least one subject")
	}
	c, err := NewCodec(opts...)
	if err != nil {
		return nil, err
	}
	text, err := avro.Compact(c.writeText)
	if err != nil {
		return nil, err
	}
	reg := &registryCache{client: cfg.Registry, ids: map[uint32]*version{}, failed: map[uint32]failure{}}
	for i, subject := range cfg.Subjects {
		var id int
		if cfg.AutoRegister {
			id, err = cfg.Registry.Register(ctx, subject, text)
			if err != nil {
				return nil, fmt.Errorf("schema registry: register the heap.events schema (version %d, fingerprint %016x) under subject %s: %w",
					c.written.n, c.written.fp, subject, err)
			}
		} else {
			id, err = cfg.Registry.Lookup(ctx, subject, text)
			if notFound(err) {
				return nil, fmt.Errorf("schema registry: subject %s does not hold this build's heap.events schema (version %d, fingerprint %016x) "+
					"and SCHEMA_REGISTRY_AUTO_REGISTER is false: register it (POST /subjects/%s/versions) or allow auto-registration: %w",
					subject, c.written.n, c.written.fp, subject, err)
			}
			if err != nil {
				return nil, fmt.Errorf("schema registry: look up the heap.events schema under subject %s: %w", subject, err)
			}
		}
		if id < 0 || id > math.MaxUint32 {
			return nil, fmt.Errorf("schema registry: subject %s: id %d does not fit the wire format's 4 bytes", subject, id)
		}
		reg.ids[uint32(id)] = c.written
		if i == 0 {
			reg.writeID = uint32(id)
		}
	}
	c.reg = reg
	c.header = binary.BigEndian.AppendUint32([]byte{0x00}, reg.writeID)
	return c, nil
}

// Learn makes sure the codec knows the writer's schema of value, asking
// the registry if it must, so that decoding value needs no network. Call
// it outside locks, on a polled batch, and retry while it returns an error
// (ErrSchemaUnavailable); a schema the registry does not have, or that
// cannot be read as the current one, is no error here: decoding the value
// reports it. Values in single-object encoding need nothing.
func (c *Codec) Learn(ctx context.Context, value []byte) error {
	if c.reg == nil || len(value) < 5 || value[0] != 0x00 {
		return nil
	}
	_, err := c.byID(ctx, binary.BigEndian.Uint32(value[1:5]), true)
	if errors.Is(err, ErrSchemaUnavailable) {
		return err
	}
	return nil
}

// byID returns the version of registry id, asking the registry the first
// time, and again when retry is set and the last answer was that it had
// none, missAgain ago.
func (c *Codec) byID(ctx context.Context, id uint32, retry bool) (*version, error) {
	if c.reg == nil {
		return nil, fmt.Errorf("events: decode: %w: schema id %d (Confluent wire format), and no schema registry is configured (SCHEMA_REGISTRY_URL)",
			ErrUnknownSchema, id)
	}
	c.reg.mu.RLock()
	v, f := c.reg.ids[id], c.reg.failed[id]
	c.reg.mu.RUnlock()
	if v != nil {
		return v, nil
	}
	if f.err != nil && (!retry || f.until.IsZero() || time.Now().Before(f.until)) {
		return nil, f.err
	}
	v, f = c.learn(ctx, id)
	c.reg.mu.Lock()
	defer c.reg.mu.Unlock()
	switch {
	case v != nil:
		c.reg.ids[id] = v
		delete(c.reg.failed, id)
		return v, nil
	case errors.Is(f.err, ErrUnknownSchema):
		c.reg.failed[id] = f
	}
	return nil, f.err
}

// learn asks the registry for id's schema and compiles its resolution.
func (c *Codec) learn(ctx context.Context, id uint32) (*version, failure) {
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	text, err := c.reg.client.Schema(ctx, int(id))
	if notFound(err) {
		return nil, failure{err: fmt.Errorf("events: decode: %w: schema id %d is not in the registry: %v", ErrUnknownSchema, id, err),
			until: time.Now().Add(missAgain)}
	}
	if err != nil {
		return nil, failure{err: fmt.Errorf("events: decode: %w: schema id %d: %v", ErrSchemaUnavailable, id, err)}
	}
	s, err := avro.Parse(text)
	if err != nil {
		return nil, failure{err: fmt.Errorf("events: decode: %w: schema id %d is not an Avro schema: %v", ErrUnknownSchema, id, err)}
	}
	fp := avro.Fingerprint(s)
	if v, ok := c.versions[fp]; ok {
		return v, failure{} // a version this build knows: its resolution is compiled
	}
	r, err := avro.NewResolver(s, c.current.schema)
	if err != nil {
		return nil, failure{err: fmt.Errorf("events: decode: %w: schema id %d (fingerprint %016x) cannot be read as the current schema: %v",
			ErrUnknownSchema, id, fp, err)}
	}
	return &version{id: id, fp: fp, schema: s, resolve: r}, failure{}
}

// notFound reports an error that says the registry lacks what was asked.
func notFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}
