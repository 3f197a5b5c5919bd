package heaptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/heap"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpfault"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/httpjson"
)

// AcceptedUser is one user of an add_user_properties call Heap kept.
type AcceptedUser struct {
	AppID string
	heap.UserProperties
	ReceivedAt time.Time
}

// UserStats are the add_user_properties counters (Stats counts track calls).
type UserStats struct {
	Requests, Accepted, Rejected, Throttled int
}

// userState is the add_user_properties side of a Sink, guarded by Sink.mu.
type userState struct {
	accepted                      []AcceptedUser
	requests, rejected, throttled int
	window                        map[string][]time.Time // app + identity -> request times
	faultFn                       func(heap.UserPropertiesRequest) *Fault
}

// UserFaultFunc is FaultFunc for add_user_properties: it decides, per valid
// decoded request, an answer to give instead of serving it (nil: serve).
// Faults queued with Inject answer the next request to either endpoint.
func UserFaultFunc(fn func(heap.UserPropertiesRequest) *Fault) Option {
	return func(s *Sink) { s.users.faultFn = fn }
}

// AcceptedUsers returns the users of the add_user_properties calls kept so
// far, one entry per user, in arrival order.
func (s *Sink) AcceptedUsers() []AcceptedUser {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AcceptedUser(nil), s.users.accepted...)
}

// UserStats returns the add_user_properties counters.
func (s *Sink) UserStats() UserStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &s.users
	return UserStats{Requests: u.requests, Accepted: len(u.accepted), Rejected: u.rejected, Throttled: u.throttled}
}

func (s *Sink) serveUserProperties(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readPost(w, r, &s.users.requests, s.rejectUsers)
	if !ok {
		return
	}
	req, err := decodeUsers(body)
	if err != nil {
		s.rejectUsers(w, err.Error())
		return
	}
	if s.users.faultFn != nil {
		if f := s.users.faultFn(req); f != nil {
			if f.Status == http.StatusBadRequest {
				s.mu.Lock()
				s.users.rejected++
				s.mu.Unlock()
			}
			httpfault.Answer(w, r, *f, "application/json")
			return
		}
	}
	if wait := s.admitUsers(req); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		httpjson.Write(w, http.StatusTooManyRequests, map[string]string{"error": "identity rate limit exceeded"})
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{})
}

func (s *Sink) rejectUsers(w http.ResponseWriter, msg string) {
	s.mu.Lock()
	s.users.rejected++
	s.mu.Unlock()
	httpjson.Write(w, http.StatusBadRequest, map[string]string{"error": msg})
}

// decodeUsers reads either shape as a bulk request and enforces
// docs/ARCHITECTURE.md §7.3; any violation rejects the whole request.
func decodeUsers(body []byte) (heap.UserPropertiesRequest, error) {
	type user struct {
		Identity   *string        `json:"identity"`
		Properties map[string]any `json:"properties"`
	}
	var raw struct {
		AppID string `json:"app_id"`
		user
		Users *[]user `json:"users"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return heap.UserPropertiesRequest{}, fmt.Errorf("invalid JSON: %v", err)
	}
	req := heap.UserPropertiesRequest{AppID: raw.AppID}
	if raw.AppID == "" {
		return req, fmt.Errorf("app_id is required")
	}
	users, name := []user{raw.user}, func(int) string { return "" }
	if raw.Users != nil {
		if raw.Identity != nil || raw.Properties != nil {
			return req, fmt.Errorf("either identity and properties, or users, not both")
		}
		users, name = *raw.Users, func(i int) string { return fmt.Sprintf("users[%d]: ", i) }
		switch {
		case len(users) == 0:
			return req, fmt.Errorf("users must not be empty")
		case len(users) > heap.MaxBatch:
			return req, fmt.Errorf("at most %d users per request, got %d", heap.MaxBatch, len(users))
		}
	}
	for i, u := range users {
		switch {
		case u.Identity == nil || *u.Identity == "":
			return req, fmt.Errorf("%sidentity is required", name(i))
		case utf8.RuneCountInString(*u.Identity) > heap.MaxIdentityLen:
			return req, fmt.Errorf("%sidentity longer than %d characters", name(i), heap.MaxIdentityLen)
		case u.Properties == nil:
			return req, fmt.Errorf("%sproperties is required", name(i))
		}
		if err := heap.CheckProperties(u.Properties); err != nil {
			return req, fmt.Errorf("%s%v", name(i), err)
		}
		req.Users = append(req.Users, heap.UserProperties{Identity: *u.Identity, Properties: u.Properties})
	}
	return req, nil
}

// admitUsers applies the per-identity limit (every occurrence of an identity
// in a request counts as one of its requests), then keeps the users. It
// returns a wait when the request would go over; nothing is kept then.
func (s *Sink) admitUsers(req heap.UserPropertiesRequest) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &s.users
	now := s.now()
	if lim, win := s.limits.UserPerIdentity, s.limits.UserWindow; lim > 0 && win > 0 {
		if u.window == nil {
			u.window = map[string][]time.Time{}
		}
		perKey := map[string]int{}
		for _, x := range req.Users {
			perKey[req.AppID+"\x00"+x.Identity]++
		}
		var wait time.Duration
		for k, n := range perKey {
			ts := u.window[k]
			i := 0
			for i < len(ts) && !ts[i].After(now.Add(-win)) {
				i++
			}
			ts = ts[i:]
			u.window[k] = ts
			if len(ts)+n <= lim {
				continue
			}
			// Wait until enough of the window has expired.
			w := win
			if idx := min(len(ts)+n-lim-1, len(ts)-1); idx >= 0 {
				w = ts[idx].Add(win).Sub(now)
			}
			wait = max(wait, w, time.Millisecond)
		}
		if wait > 0 {
			u.throttled++
			return wait
		}
		for k, n := range perKey {
			for range n {
				u.window[k] = append(u.window[k], now)
			}
		}
	}
	for _, x := range req.Users {
		u.accepted = append(u.accepted, AcceptedUser{AppID: req.AppID, UserProperties: x, ReceivedAt: now})
	}
	return 0
}
