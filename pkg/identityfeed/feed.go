// Package identityfeed is the identity feed (docs/ARCHITECTURE.md §2.2, §3): POST
// /v1/identities takes Heap's own add_user_properties bodies, records which
// Heap identity owns each email in the compacted heap.identities topic and,
// when the source says so, forwards the call to Heap; Import does the same
// for a CSV export (first load). Emails and tokens never reach a log.
package identityfeed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/identity"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/kafka"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/requestid"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// Path is the feed's route.
const Path = "/v1/identities"

// MaxBody bounds a request body: 1000 users with a few properties of under
// 1024 characters each stay far below it.
const MaxBody = 16 << 20

// Config is what the handler needs.
type Config struct {
	Sources *source.Sources
	Topic   string // heap.identities
	// HeapURL overrides every source's Heap host (HEAP_API_URL); empty: the
	// source's region.
	HeapURL string
	// Heap forwards calls; nil: a client whose requests time out after 10 s.
	Heap           *heap.Client
	ProduceTimeout time.Duration // default 8 s
	Log            *zap.Logger
	now            func() time.Time
}

type handler struct {
	cfg Config
	pub kafka.Publisher
}

// NewHandler returns the POST /v1/identities handler. Mount it at Path.
func NewHandler(cfg Config, pub kafka.Publisher) http.Handler {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 8 * time.Second
	}
	if cfg.Heap == nil {
		cfg.Heap = &heap.Client{Timeout: 10 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &handler{cfg: cfg, pub: pub}
}

// Skipped is a user whose call was accepted but who gave no mapping.
type Skipped struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

// Response is the 2xx answer (and, with error set, the 502/503 one).
type Response struct {
	Recorded  int       `json:"recorded"`
	Skipped   []Skipped `json:"skipped"`
	Forwarded bool      `json:"forwarded"`
	Note      string    `json:"note,omitempty"`
	Error     string    `json:"error,omitempty"`
	RequestID string    `json:"request_id"`
}

type problem struct {
	status int
	msg    string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := requestid.From(r)
	w.Header().Set(requestid.Header, rid)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, "", rid, &problem{http.StatusMethodNotAllowed, "method not allowed"})
		return
	}
	src, p := h.authenticate(r)
	if p != nil {
		h.fail(w, "", rid, p)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, src.ID, rid, &problem{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", MaxBody)})
		} else {
			h.fail(w, src.ID, rid, &problem{http.StatusBadRequest, "read body: " + err.Error()})
		}
		return
	}
	req, p := parse(body, src)
	if p != nil {
		h.fail(w, src.ID, rid, p)
		return
	}
	resp := Response{Skipped: []Skipped{}, RequestID: rid}
	var recs []*kgo.Record
	if src.JoinsOnIdentity() {
		// The email is the identity: there is nothing to map. The call is
		// still accepted (and forwarded) so an app can point its
		// add_user_properties calls here whatever the source's join key.
		resp.Note = "source joins on identity: no mapping needed, none recorded"
	} else {
		at := h.cfg.now()
		for i, u := range req.users {
			email, reason := emailOf(u.Properties, src.EmailProperty)
			if reason != "" {
				resp.Skipped = append(resp.Skipped, Skipped{Index: i, Reason: reason})
				continue
			}
			rec, err := identity.Bind(src.ID, src.HeapAppID, email, u.Identity, at).Record(h.cfg.Topic)
			if err != nil {
				// parse validated the identity: this is a bug, not the caller's fault.
				h.fail(w, src.ID, rid, &problem{http.StatusInternalServerError, fmt.Sprintf("users[%d]: %v", i, err)})
				return
			}
			rec.Headers = []kgo.RecordHeader{
				{Key: kafka.HeaderSource, Value: []byte(src.ID)},
				{Key: kafka.HeaderRequestID, Value: []byte(rid)},
			}
			recs = append(recs, rec)
		}
	}
	if len(recs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ProduceTimeout)
		err := h.pub.Publish(ctx, recs...)
		cancel()
		if err != nil {
			// Not durably recorded: nothing is forwarded, the caller retries.
			h.cfg.Log.Warn("identities not recorded", zap.String("source", src.ID), zap.String("request_id", rid),
				zap.Int("users", len(recs)), zap.Error(err))
			w.Header().Set("Retry-After", "1")
			h.fail(w, src.ID, rid, &problem{http.StatusServiceUnavailable, "not recorded, retry later"})
			return
		}
	}
	resp.Recorded = len(recs)
	if src.ForwardIdentities {
		if status := h.forward(r.Context(), w, src, req, rid, &resp); status != 0 {
			httpjson.Write(w, status, resp)
			return
		}
	}
	h.cfg.Log.Info("identities accepted", zap.String("source", src.ID), zap.String("request_id", rid),
		zap.Int("users", len(req.users)), zap.Int("recorded", resp.Recorded), zap.Int("skipped", len(resp.Skipped)),
		zap.Bool("forwarded", resp.Forwarded))
	httpjson.Write(w, http.StatusOK, resp)
}

// forward sends req to Heap once the mappings are recorded: the request
// parse validated, encoded again, never the caller's bytes. It returns 0
// when Heap took it, else the status to answer with resp's error set.
func (h *handler) forward(ctx context.Context, w http.ResponseWriter, src source.Source, req request, rid string, resp *Response) int {
	body, err := req.encode()
	if err != nil {
		// parse validated every value: this is a bug, not the caller's fault.
		resp.Error = "request not encodable for Heap; no call made"
		h.cfg.Log.Error("identities not forwarded: not encodable", zap.String("source", src.ID),
			zap.String("request_id", rid), zap.Error(err))
		return http.StatusInternalServerError
	}
	err = h.cfg.Heap.AddUserProperties(ctx, src.HeapURL(h.cfg.HeapURL), src.HeapAppID, body)
	if err == nil {
		resp.Forwarded = true
		return 0
	}
	// Heap's answer body is not logged: it may quote the caller's values.
	// StatusError.Error, which redacts it, is what the caller is told.
	var se *httperr.StatusError
	heapStatus := 0
	if errors.As(err, &se) {
		heapStatus = se.Status
	}
	log := h.cfg.Log.With(zap.String("source", src.ID), zap.String("request_id", rid),
		zap.Int("recorded", resp.Recorded), zap.Int("heap_status", heapStatus))
	if se == nil {
		log = log.With(zap.Error(err))
	}
	recorded := "the mapping was recorded"
	if resp.Recorded == 0 {
		recorded = "no mapping was recorded"
	}
	if heap.Retryable(err) || errors.Is(err, context.Canceled) {
		wait := max(heap.RetryAfter(err), time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		log.Warn("identities not forwarded: heap unavailable")
		resp.Error = fmt.Sprintf("Heap did not take the call (%s); %s; retry it (recording again is harmless)", heapReason(err), recorded)
		return http.StatusServiceUnavailable
	}
	log.Warn("identities not forwarded: heap refused them")
	resp.Error = fmt.Sprintf("Heap refused the call (%s); %s", heapReason(err), recorded)
	return http.StatusBadGateway
}

// heapReason is what the caller is told of Heap's failure: its status and
// its answer with addresses redacted (StatusError.Error), or why there is none.
func heapReason(err error) string {
	var se *httperr.StatusError
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "unreachable"
}

// authenticate finds the source whose identity_token is the bearer token.
// Every source is compared, in constant time over hashes, so neither the
// answer's timing nor the token's length tells which part matched.
func (h *handler) authenticate(r *http.Request) (source.Source, *problem) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return source.Source{}, &problem{http.StatusUnauthorized, "missing bearer token"}
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	var found source.Source
	match := 0
	for _, s := range h.cfg.Sources.All() {
		if s.IdentityToken == "" {
			continue
		}
		want := sha256.Sum256([]byte(s.IdentityToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			found, match = s, 1
		}
	}
	if match == 0 {
		return source.Source{}, &problem{http.StatusUnauthorized, "invalid bearer token"}
	}
	return found, nil
}

// request is a decoded body: either shape, as a list of users.
type request struct {
	appID string
	bulk  bool // sent as {app_id, users}, else {app_id, identity, properties}
	users []heap.UserProperties
}

// encode is the add_user_properties body of req, in the shape it came in.
func (req request) encode() ([]byte, error) {
	if req.bulk {
		return json.Marshal(heap.UserPropertiesRequest{AppID: req.appID, Users: req.users})
	}
	return json.Marshal(struct {
		AppID string `json:"app_id"`
		heap.UserProperties
	}{req.appID, req.users[0]})
}

// parse decodes and validates a body; any problem refuses the whole call,
// so nothing is recorded from a bad request. A body with duplicate keys, or
// keys differing only in case, is refused (checkKeys): what is recorded and
// forwarded is exactly what was validated.
func parse(body []byte, src source.Source) (request, *problem) {
	type user struct {
		Identity   *string        `json:"identity"`
		Properties map[string]any `json:"properties"`
	}
	var raw struct {
		AppID *string `json:"app_id"`
		user
		Users *[]user `json:"users"`
	}
	bad := func(format string, a ...any) *problem {
		return &problem{http.StatusBadRequest, fmt.Sprintf(format, a...)}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return request{}, bad("invalid JSON: %v", err)
	}
	if dec.More() {
		return request{}, bad("invalid JSON: more than one value")
	}
	if err := checkKeys(body); err != nil {
		return request{}, bad("ambiguous JSON: %v", err)
	}
	switch {
	case raw.AppID == nil || *raw.AppID == "":
		return request{}, bad("app_id is required")
	case *raw.AppID != src.HeapAppID:
		// Authenticated, but for another app: a token only feeds its own.
		return request{}, &problem{http.StatusForbidden, "app_id is not this token's Heap app"}
	}
	users, name := []user{raw.user}, func(int) string { return "" }
	if raw.Users != nil {
		if raw.Identity != nil || raw.Properties != nil {
			return request{}, bad("either identity and properties, or users, not both")
		}
		users, name = *raw.Users, func(i int) string { return fmt.Sprintf("users[%d]: ", i) }
		switch {
		case len(users) == 0:
			return request{}, bad("users must not be empty")
		case len(users) > heap.MaxBatch:
			return request{}, bad("at most %d users per request, got %d", heap.MaxBatch, len(users))
		}
	}
	req := request{appID: *raw.AppID, bulk: raw.Users != nil, users: make([]heap.UserProperties, len(users))}
	for i, u := range users {
		if u.Identity == nil {
			return request{}, bad("%sidentity is required", name(i))
		}
		if reason := checkIdentity(*u.Identity); reason != "" {
			return request{}, bad("%s%s", name(i), reason)
		}
		if src.ForwardIdentities {
			// What Heap would refuse is refused before anything is recorded.
			if u.Properties == nil {
				return request{}, bad("%sproperties is required", name(i))
			}
			if err := heap.CheckProperties(u.Properties); err != nil {
				return request{}, bad("%s%v", name(i), err)
			}
		}
		req.users[i] = heap.UserProperties{Identity: *u.Identity, Properties: u.Properties}
	}
	return req, nil
}

// checkIdentity returns why identity cannot be recorded, or "". Identities
// are kept exactly as given (Heap's are case-sensitive), so surrounding
// spaces are refused rather than trimmed.
func checkIdentity(ident string) string {
	switch {
	case ident == "":
		return "identity is required"
	case utf8.RuneCountInString(ident) > heap.MaxIdentityLen:
		return fmt.Sprintf("identity longer than %d characters", heap.MaxIdentityLen)
	case strings.TrimSpace(ident) != ident:
		return "identity has leading or trailing spaces"
	}
	if err := mailchimp.CheckAddress(ident); err != nil {
		return "identity: " + err.Error() // control characters or invalid UTF-8 never reach Heap
	}
	return ""
}

// emailOf returns the email in props[prop], or why there is none. Reasons
// never quote the value.
func emailOf(props map[string]any, prop string) (string, string) {
	v, ok := props[prop]
	if !ok {
		return "", fmt.Sprintf("no %q property", prop)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Sprintf("%q property is not a string", prop)
	}
	return checkEmail(s, prop)
}

func checkEmail(email, what string) (string, string) {
	email = strings.TrimSpace(email)
	switch {
	case email == "":
		return "", fmt.Sprintf("%q is empty", what)
	case !strings.Contains(email, "@"):
		return "", fmt.Sprintf("%q is not an email address", what)
	}
	if err := mailchimp.CheckAddress(email); err != nil {
		return "", fmt.Sprintf("%q: %v", what, err)
	}
	return email, ""
}

// fail answers a refused request in the shape pkg/ingress uses.
func (h *handler) fail(w http.ResponseWriter, source, rid string, p *problem) {
	if p.status == http.StatusUnauthorized {
		challenge := `Bearer realm="identities"`
		if p.msg == "invalid bearer token" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	// A reason may quote a caller's property key: the caller reads it whole,
	// the log without anything address-like.
	h.cfg.Log.Info("identities refused", zap.String("source", source), zap.String("request_id", rid),
		zap.Int("status", p.status), zap.String("reason", httperr.RedactAddresses(p.msg)))
	httpjson.Write(w, p.status, map[string]string{"error": p.msg, "request_id": rid})
}
