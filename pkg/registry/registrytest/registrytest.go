// Package registrytest is a stand-in for a schema registry: the part of
// the Confluent Schema Registry REST API pkg/registry speaks, answering as
// the API documents it, in memory.
//
//   - POST /subjects/{subject}/versions registers an Avro schema ({"schema":
//     "..."}) and answers {"id": n}: the id the same schema has under any
//     subject, or a new one; the same schema again under the subject is its
//     existing id. A schema incompatible with the subject's versions under
//     its compatibility level is 409 (error_code 409); one that does not
//     parse, 422 (42201).
//   - POST /subjects/{subject} looks a schema up: {"subject", "id",
//     "version", "schema"}, or 404 with error_code 40401 (no such subject)
//     or 40403 (schema not found).
//   - GET /schemas/ids/{id}: {"schema": "..."}, or 404 with 40403.
//   - GET /subjects, GET /subjects/{subject}/versions, GET and PUT /config
//     and /config/{subject} ({"compatibility": "FULL_TRANSITIVE"}): the
//     global level is BACKWARD, the registry's default.
//   - With BasicAuth or BearerToken set, a request without them is 401
//     (error_code 401); a POST or PUT body that is not one of the API's
//     media types is 415.
//
// "The same schema" is the same JSON once whitespace is dropped.
package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/events/avro"
)

// Server is a running stand-in.
type Server struct {
	URL string

	mu       sync.Mutex
	user     string
	pass     string
	token    string
	global   string
	levels   map[string]string // per subject
	texts    []string          // by id-1
	parsed   []*avro.Schema
	subjects map[string][]int // ids, in version order
	requests map[string]int   // "METHOD /path"
	fail     []int            // statuses the next requests answer
}

// Option configures a Server.
type Option func(*Server)

// BasicAuth requires HTTP basic authentication.
func BasicAuth(user, pass string) Option { return func(s *Server) { s.user, s.pass = user, pass } }

// BearerToken requires a bearer token.
func BearerToken(token string) Option { return func(s *Server) { s.token = token } }

// Compatibility sets the global compatibility level.
func Compatibility(level string) Option { return func(s *Server) { s.global = level } }

// New starts a stand-in, stopped when t ends.
func New(t testing.TB, opts ...Option) *Server {
	s := &Server{global: avro.Backward, levels: map[string]string{}, subjects: map[string][]int{}, requests: map[string]int{}}
	for _, o := range opts {
		o(s)
	}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// Requests counts the requests to one route, e.g. "GET /schemas/ids/1"
// (the path as sent, escaped).
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Fail makes the next requests answer these statuses, one each (a 503
// while the registry restarts).
func (s *Server) Fail(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, statuses...)
}

// SetCompatibility sets a subject's compatibility level ("" for the
// global one).
func (s *Server) SetCompatibility(subject, level string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if subject == "" {
		s.global = level
	} else {
		s.levels[subject] = level
	}
}

// Subject returns the ids of a subject's versions, oldest first.
func (s *Server) Subject(subject string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subjects[subject])
}

type apiError struct {
	status int
	Code   int    `json:"error_code"`
	Msg    string `json:"message"`
}

func fail(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[r.Method+" "+r.URL.EscapedPath()]++
	out, e := s.route(r)
	w.Header().Set("Content-Type", registryType)
	if e != nil {
		w.WriteHeader(e.status)
		json.NewEncoder(w).Encode(e)
		return
	}
	json.NewEncoder(w).Encode(out)
}

const registryType = "application/vnd.schemaregistry.v1+json"

// accepted are the request media types the registry takes.
var accepted = []string{registryType, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"}

func (s *Server) route(r *http.Request) (any, *apiError) {
	if len(s.fail) > 0 {
		st := s.fail[0]
		s.fail = s.fail[1:]
		return nil, fail(st, st, "injected failure")
	}
	if e := s.authorize(r); e != nil {
		return nil, e
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if !slices.Contains(accepted, mt) {
			return nil, fail(http.StatusUnsupportedMediaType, 415, "HTTP 415 Unsupported Media Type")
		}
	}
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, fail(http.StatusBadRequest, 400, "bad path")
		}
		parts[i] = u
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		return s.register(parts[1], r)
	case r.Method == http.MethodPost && len(parts) == 2 && parts[0] == "subjects":
		return s.lookup(parts[1], r)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "schemas" && parts[1] == "ids":
		id, err := strconv.Atoi(parts[2])
		if err != nil || id < 1 || id > len(s.texts) {
			return nil, fail(http.StatusNotFound, 40403, "Schema %s not found", parts[2])
		}
		return map[string]string{"schema": s.texts[id-1]}, nil
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "subjects":
		names := []string{}
		for n := range s.subjects {
			names = append(names, n)
		}
		slices.Sort(names)
		return names, nil
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		ids, ok := s.subjects[parts[1]]
		if !ok {
			return nil, fail(http.StatusNotFound, 40401, "Subject '%s' not found.", parts[1])
		}
		versions := make([]int, len(ids))
		for i := range ids {
			versions[i] = i + 1
		}
		return versions, nil
	case parts[0] == "config" && len(parts) <= 2:
		return s.config(parts[1:], r)
	}
	return nil, fail(http.StatusNotFound, 404, "HTTP 404 Not Found")
}

func (s *Server) authorize(r *http.Request) *apiError {
	switch {
	case s.token != "":
		if r.Header.Get("Authorization") == "Bearer "+s.token {
			return nil
		}
	case s.user != "":
		if u, p, ok := r.BasicAuth(); ok && u == s.user && p == s.pass {
			return nil
		}
	default:
		return nil
	}
	return fail(http.StatusUnauthorized, 401, "Unauthorized")
}

// schemaOf reads a request's {"schema": "..."}: its compact text and
// parse.
func schemaOf(r *http.Request) (string, *avro.Schema, *apiError) {
	var in struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return "", nil, fail(http.StatusBadRequest, 400, "Unrecognized request body: %v", err)
	}
	if in.SchemaType != "" && in.SchemaType != "AVRO" {
		return "", nil, fail(http.StatusUnprocessableEntity, 42201, "Invalid schema: only AVRO here")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(in.Schema)); err != nil {
		return "", nil, fail(http.StatusUnprocessableEntity, 42201, "Invalid schema: %v", err)
	}
	p, err := avro.Parse(in.Schema)
	if err == nil {
		err = avro.ValidateDefaults(p)
	}
	if err != nil {
		return "", nil, fail(http.StatusUnprocessableEntity, 42201, "Invalid schema: %v", err)
	}
	return b.String(), p, nil
}

func (s *Server) register(subject string, r *http.Request) (any, *apiError) {
	text, p, e := schemaOf(r)
	if e != nil {
		return nil, e
	}
	ids := s.subjects[subject]
	for _, id := range ids {
		if s.texts[id-1] == text {
			return map[string]int{"id": id}, nil
		}
	}
	level := s.global
	if l, ok := s.levels[subject]; ok {
		level = l
	}
	earlier := make([]*avro.Schema, len(ids))
	for i, id := range ids {
		earlier[i] = s.parsed[id-1]
	}
	if err := avro.Check(level, p, earlier); err != nil {
		return nil, fail(http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject %q, details: [%v]", subject, err)
	}
	id := slices.Index(s.texts, text) + 1
	if id == 0 {
		s.texts, s.parsed = append(s.texts, text), append(s.parsed, p)
		id = len(s.texts)
	}
	s.subjects[subject] = append(ids, id)
	return map[string]int{"id": id}, nil
}

func (s *Server) lookup(subject string, r *http.Request) (any, *apiError) {
	text, _, e := schemaOf(r)
	if e != nil {
		return nil, e
	}
	ids, ok := s.subjects[subject]
	if !ok {
		return nil, fail(http.StatusNotFound, 40401, "Subject '%s' not found.", subject)
	}
	for v, id := range ids {
		if s.texts[id-1] == text {
			return map[string]any{"subject": subject, "id": id, "version": v + 1, "schema": text}, nil
		}
	}
	return nil, fail(http.StatusNotFound, 40403, "Schema not found")
}

func (s *Server) config(subject []string, r *http.Request) (any, *apiError) {
	if r.Method == http.MethodPut {
		var in struct {
			Compatibility string `json:"compatibility"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || !slices.Contains(avro.Levels, in.Compatibility) {
			return nil, fail(http.StatusUnprocessableEntity, 42203, "Invalid compatibility level")
		}
		if len(subject) == 0 {
			s.global = in.Compatibility
		} else {
			s.levels[subject[0]] = in.Compatibility
		}
		return map[string]string{"compatibility": in.Compatibility}, nil
	}
	if r.Method != http.MethodGet {
		return nil, fail(http.StatusMethodNotAllowed, 405, "HTTP 405 Method Not Allowed")
	}
	level := s.global
	if len(subject) == 1 {
		l, ok := s.levels[subject[0]]
		if !ok {
			return nil, fail(http.StatusNotFound, 40408, "Subject '%s' does not have subject-level compatibility configured", subject[0])
		}
		level = l
	}
	return map[string]string{"compatibilityLevel": level}, nil
}
