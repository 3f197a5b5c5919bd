// Package registry is a client of the part of the Confluent Schema
// Registry REST API the pipeline uses: register a schema under a subject,
// look one up, fetch one by id. Apicurio Registry serves the same API under
// /apis/ccompat/v7, Redpanda and Karapace at their root; give the base URL.
// pkg/registry/registrytest is its stand-in.
//
// The client does not retry: the codec retries a schema it could not fetch
// (events.ErrSchemaUnavailable), and a service that cannot register its
// schema at start-up exits for its orchestrator to restart it.
package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ContentType is the registry API's media type, sent and accepted.
const ContentType = "application/vnd.schemaregistry.v1+json"

// Config is how to reach a registry: SCHEMA_REGISTRY_URL and its
// companions.
type Config struct {
	// URL is the API's base, e.g. https://registry.example.com or, for
	// Apicurio, https://apicurio.example.com/apis/ccompat/v7.
	URL string
	// Username and Password: HTTP basic authentication (Confluent Cloud's
	// API key and secret). Token: a bearer token instead.
	Username, Password string
	Token              string
	// CAFile is a PEM bundle trusted for an https URL, besides the
	// system's.
	CAFile string
	// Timeout bounds one request; default 10 s.
	Timeout time.Duration
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Client talks to one registry. It is safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
	cfg  Config
}

// New checks cfg and builds a Client; it does not contact the registry.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SCHEMA_REGISTRY_URL must be an http:// or https:// URL with a host")
	}
	if u.User != nil {
		return nil, errors.New("SCHEMA_REGISTRY_URL must not carry credentials: use SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD")
	}
	if cfg.Token != "" && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("set SCHEMA_REGISTRY_TOKEN or SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD, not both")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD go together")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("SCHEMA_REGISTRY_CA_FILE: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("SCHEMA_REGISTRY_CA_FILE %s: no PEM certificate in it", cfg.CAFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = t
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return &Client{base: u, cfg: cfg, http: &http.Client{Transport: rt, Timeout: cfg.Timeout,
		// A redirect would carry the credentials elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Describe is the registry's URL and authentication, without secrets, for
// a start-up log line.
func (c *Client) Describe() string {
	auth := "no authentication"
	switch {
	case c.cfg.Token != "":
		auth = "bearer token"
	case c.cfg.Username != "":
		auth = "basic authentication as " + c.cfg.Username
	}
	return c.base.Redacted() + ", " + auth
}

// Error is an error answer of the registry: its HTTP status and the
// error_code and message of its body.
type Error struct {
	Status  int
	Code    int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("schema registry: %d %s (error_code %d): %s", e.Status, http.StatusText(e.Status), e.Code, e.Message)
}

// NotFound reports a 404: 40401 subject, 40402 version or 40403 schema not
// found.
func (e *Error) NotFound() bool { return e.Status == http.StatusNotFound }

// Conflict reports a 409: the schema is incompatible with the subject's
// earlier versions under its compatibility level.
func (e *Error) Conflict() bool { return e.Status == http.StatusConflict }

type schemaBody struct {
	Schema string `json:"schema"`
}

type idBody struct {
	ID *int `json:"id"`
}

// Register registers schema (Avro) under subject, or finds it registered
// there, and returns its id: POST /subjects/{subject}/versions.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	var out idBody
	if err := c.do(ctx, http.MethodPost, []string{"subjects", subject, "versions"}, schemaBody{schema}, &out); err != nil {
		return 0, err
	}
	if out.ID == nil {
		return 0, errors.New("schema registry: register: no id in the answer")
	}
	return *out.ID, nil
}

// Lookup returns the id of schema under subject: POST /subjects/{subject}.
// An *Error that is NotFound when the subject or the schema is not there.
func (c *Client) Lookup(ctx context.Context, subject, schema string) (int, error) {
	var out idBody
	if err := c.do(ctx, http.MethodPost, []string{"subjects", subject}, schemaBody{schema}, &out); err != nil {
		return 0, err
	}
	if out.ID == nil {
		return 0, errors.New("schema registry: lookup: no id in the answer")
	}
	return *out.ID, nil
}

// Schema returns the schema with id: GET /schemas/ids/{id}. An *Error that
// is NotFound when there is none.
func (c *Client) Schema(ctx context.Context, id int) (string, error) {
	var out struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := c.do(ctx, http.MethodGet, []string{"schemas", "ids", strconv.Itoa(id)}, nil, &out); err != nil {
		return "", err
	}
	if out.SchemaType != "" && out.SchemaType != "AVRO" {
		return "", fmt.Errorf("schema registry: schema %d is %s, not Avro", id, out.SchemaType)
	}
	if out.Schema == "" {
		return "", fmt.Errorf("schema registry: schema %d: no schema in the answer", id)
	}
	return out.Schema, nil
}

// maxAnswer bounds an answer's body: a schema is a few kilobytes.
const maxAnswer = 4 << 20

func (c *Client) do(ctx context.Context, method string, path []string, in, out any) error {
	u := *c.base
	raw := c.base.EscapedPath()
	for _, p := range path {
		u.Path += "/" + p
		raw += "/" + url.PathEscape(p) // a subject may hold '/' or '%'
	}
	u.RawPath = raw
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("schema registry: %w", err)
	}
	req.Header.Set("Accept", ContentType+", application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5")
	if in != nil {
		req.Header.Set("Content-Type", ContentType)
	}
	switch {
	case c.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	case c.cfg.Username != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL; the caller names what it asked
		}
		return fmt.Errorf("schema registry: %s %s: %w", method, c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("schema registry: read the answer: %w", err)
	}
	if len(b) > maxAnswer {
		return fmt.Errorf("schema registry: answer over %d bytes", maxAnswer)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var eb struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &eb) == nil {
			e.Code, e.Message = eb.Code, eb.Message
		} else {
			e.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("schema registry: answer is not JSON: %w", err)
	}
	return nil
}
