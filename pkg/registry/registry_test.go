package registry_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/registry/registrytest"
)

const (
	v1 = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`
	// v2 adds an optional field: compatible both ways.
	v2 = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","string"],"default":null}]}`
	// v3 adds a field without default: old data cannot be read with it.
	v3 = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":"int"}]}`
)

func client(t *testing.T, cfg registry.Config) *registry.Client {
	t.Helper()
	c, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func asError(t *testing.T, err error) *registry.Error {
	t.Helper()
	var e *registry.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *registry.Error", err, err)
	}
	return e
}

func TestRegisterLookupFetch(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	c := client(t, registry.Config{URL: srv.URL})

	if _, err := c.Lookup(ctx, "heap.events-value", v1); !asError(t, err).NotFound() || asError(t, err).Code != 40401 {
		t.Errorf("Lookup in a missing subject: %v, want 404 with 40401", err)
	}
	id, err := c.Register(ctx, "heap.events-value", v1)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Register(ctx, "heap.events-value", "  "+v1+"\n"); err != nil || again != id {
		t.Errorf("registering the same schema again: %d, %v; want id %d", again, err, id)
	}
	if other, err := c.Register(ctx, "heap.events.pending-value", v1); err != nil || other != id {
		t.Errorf("the same schema under another subject: %d, %v; want id %d", other, err, id)
	}
	if got, err := c.Lookup(ctx, "heap.events-value", v1); err != nil || got != id {
		t.Errorf("Lookup = %d, %v; want %d", got, err, id)
	}
	if _, err := c.Lookup(ctx, "heap.events-value", v2); !asError(t, err).NotFound() || asError(t, err).Code != 40403 {
		t.Errorf("Lookup of an unregistered schema: %v, want 404 with 40403", err)
	}
	text, err := c.Schema(ctx, id)
	if err != nil || text != v1 {
		t.Errorf("Schema(%d) = %q, %v", id, text, err)
	}
	if _, err := c.Schema(ctx, 999); !asError(t, err).NotFound() {
		t.Errorf("Schema(999): %v, want not found", err)
	}
	id2, err := c.Register(ctx, "heap.events-value", v2)
	if err != nil || id2 == id {
		t.Fatalf("Register(v2) = %d, %v", id2, err)
	}
	if got := srv.Subject("heap.events-value"); len(got) != 2 || got[0] != id || got[1] != id2 {
		t.Errorf("subject versions %v", got)
	}
}

// A subject's compatibility level holds: 409 for a schema that breaks it.
func TestRegisterIncompatible(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t, registrytest.Compatibility(avro.FullTransitive))
	c := client(t, registry.Config{URL: srv.URL})
	if _, err := c.Register(ctx, "s-value", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "s-value", v2); err != nil {
		t.Fatalf("a compatible version refused: %v", err)
	}
	_, err := c.Register(ctx, "s-value", v3)
	if e := asError(t, err); !e.Conflict() || e.Code != 409 || !strings.Contains(e.Message, "incompatible") {
		t.Errorf("an incompatible version: %v, want 409", err)
	}
	srv.SetCompatibility("s-value", avro.None)
	if _, err := c.Register(ctx, "s-value", v3); err != nil {
		t.Errorf("with NONE: %v", err)
	}
	if _, err := c.Register(ctx, "s-value", `{"type":"nosuch"}`); asError(t, err).Code != 42201 {
		t.Errorf("an invalid schema: %v, want 422 42201", err)
	}
}

func TestAuthentication(t *testing.T) {
	ctx := context.Background()
	basic := registrytest.New(t, registrytest.BasicAuth("key", "s3cret-pass"))
	if _, err := client(t, registry.Config{URL: basic.URL, Username: "key", Password: "s3cret-pass"}).Register(ctx, "s", v1); err != nil {
		t.Errorf("basic auth refused: %v", err)
	}
	_, err := client(t, registry.Config{URL: basic.URL, Username: "key", Password: "wrong-pass"}).Register(ctx, "s", v1)
	if e := asError(t, err); e.Status != http.StatusUnauthorized || e.NotFound() {
		t.Errorf("a wrong password: %v, want 401", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("the error carries the password: %v", err)
	}
	bearer := registrytest.New(t, registrytest.BearerToken("t0ken-value"))
	if _, err := client(t, registry.Config{URL: bearer.URL, Token: "t0ken-value"}).Schema(ctx, 1); !asError(t, err).NotFound() {
		t.Errorf("bearer token: %v, want through to a 404", err)
	}
	if _, err := client(t, registry.Config{URL: bearer.URL}).Schema(ctx, 1); asError(t, err).Status != 401 {
		t.Errorf("no token: %v, want 401", err)
	}
	c := client(t, registry.Config{URL: bearer.URL, Token: "t0ken-value"})
	if d := c.Describe(); strings.Contains(d, "t0ken") || !strings.Contains(d, "bearer") {
		t.Errorf("Describe() = %q", d)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, cfg := range []registry.Config{
		{},
		{URL: "registry:8081"},
		{URL: "ftp://registry"},
		{URL: "https://user:pw@registry"},
		{URL: "https://registry", Token: "t", Username: "u", Password: "p"},
		{URL: "https://registry", Password: "p"},
		{URL: "https://registry", Username: "u"},
		{URL: "https://registry", CAFile: "/nonexistent/ca.pem"},
		{URL: "https://registry", CAFile: "registry.go"}, // no PEM in it
	} {
		if _, err := registry.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		} else if cfg.Password != "" && strings.Contains(err.Error(), cfg.Password+"x") {
			t.Errorf("error holds the password: %v", err)
		}
	}
}

// recorder answers every request with a schema and keeps what it was
// sent.
type recorder struct {
	paths, types []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.paths = append(r.paths, req.URL.EscapedPath())
	r.types = append(r.types, req.Header.Get("Content-Type"))
	return &http.Response{StatusCode: 200, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"id":3,"schema":"\"string\""}`))}, nil
}

// A base path (Apicurio's /apis/ccompat/v7) is kept, and a subject is one
// escaped path segment.
func TestPaths(t *testing.T) {
	rec := &recorder{}
	c := client(t, registry.Config{URL: "https://apicurio.example/apis/ccompat/v7/", Transport: rec})
	ctx := context.Background()
	if _, err := c.Register(ctx, "team/heap.events-value", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "heap.events-value", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Schema(ctx, 3); err != nil {
		t.Fatal(err)
	}
	want := []string{"/apis/ccompat/v7/subjects/team%2Fheap.events-value/versions", "/apis/ccompat/v7/subjects/heap.events-value", "/apis/ccompat/v7/schemas/ids/3"}
	if strings.Join(rec.paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths %q, want %q", rec.paths, want)
	}
	if rec.types[0] != registry.ContentType || rec.types[2] != "" {
		t.Errorf("content types %q", rec.types)
	}
}

// SCHEMA_REGISTRY_CA_FILE: a registry whose certificate that CA signed is
// trusted; without it, refused.
func TestCAFile(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", registry.ContentType)
		io.WriteString(w, `{"schema":"\"string\""}`)
	}))
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client(t, registry.Config{URL: ts.URL}).Schema(ctx, 1); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
	if s, err := client(t, registry.Config{URL: ts.URL, CAFile: ca}).Schema(ctx, 1); err != nil || s != `"string"` {
		t.Errorf("with the CA file: %q, %v", s, err)
	}
}

func TestUnavailable(t *testing.T) {
	srv := registrytest.New(t)
	c := client(t, registry.Config{URL: srv.URL})
	srv.Fail(503)
	_, err := c.Schema(context.Background(), 1)
	if e := asError(t, err); e.Status != 503 || e.NotFound() {
		t.Errorf("a 503: %v", err)
	}
	dead := client(t, registry.Config{URL: "http://127.0.0.1:1"})
	if _, err := dead.Schema(context.Background(), 1); err == nil || errors.As(err, new(*registry.Error)) {
		t.Errorf("a refused connection: %v, want a transport error", err)
	}
}
