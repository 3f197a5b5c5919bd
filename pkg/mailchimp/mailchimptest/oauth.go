package mailchimptest

import (
	"crypto/subtle"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"
)

// accountIdent is what the metadata endpoint says about an account.
type accountIdent struct {
	name   string
	userID int
}

// authorize answers GET /oauth2/authorize: it approves at once on behalf of
// the login account and redirects with a single-use code and the same state.
func (s *Service) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, oauthError("invalid_request", "use GET"))
		return
	}
	q := r.URL.Query()
	if q.Get("response_type") != "code" {
		writeJSON(w, http.StatusBadRequest, oauthError("unsupported_response_type", "response_type must be code"))
		return
	}
	clientID, redirect := q.Get("client_id"), q.Get("redirect_uri")
	s.mu.Lock()
	_, known := s.clients[clientID]
	s.mu.Unlock()
	if !known {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_client", "unknown client_id"))
		return
	}
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "redirect_uri must be an absolute http(s) URL"))
		return
	}
	code := randomHex(16)
	s.mu.Lock()
	s.codes[code] = oauthGrant{clientID: clientID, redirectURI: redirect, account: s.loginAccount}
	s.mu.Unlock()
	rq := u.Query()
	rq.Set("code", code)
	if st := q.Get("state"); st != "" {
		rq.Set("state", st)
	}
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// tokenExchange answers POST /oauth2/token (grant_type=authorization_code).
// A code is spent by the exchange that succeeds with it.
func (s *Service) tokenExchange(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, oauthError("invalid_request", "use POST"))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", err.Error()))
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		writeJSON(w, http.StatusBadRequest, oauthError("unsupported_grant_type", "grant_type must be authorization_code"))
		return
	}
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if id, sec, ok := r.BasicAuth(); ok && clientID == "" {
		clientID, secret = id, sec
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want, known := s.clients[clientID]
	if !known {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_client", "unknown client_id"))
		return
	}
	g, ok := s.codes[f.Get("code")]
	if !ok || g.clientID != clientID || g.redirectURI != f.Get("redirect_uri") ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", "invalid code, client secret or redirect_uri"))
		return
	}
	delete(s.codes, f.Get("code"))
	tok := randomHex(16)
	s.tokens[tok] = &token{account: g.account}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": 0, "scope": nil,
	})
}

// metadata answers GET /oauth2/metadata. A missing, unknown or revoked token
// gets HTTP 200 {"error":"invalid_token"}, as Mailchimp answers.
func (s *Service) metadata(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	s.mu.Lock()
	t, ok := s.tokens[tok]
	valid := ok && !t.revoked && (strings.EqualFold(scheme, "OAuth") || strings.EqualFold(scheme, "Bearer"))
	var id accountIdent
	if valid {
		id = ident(t.account)
	}
	endpoint, dc := s.apiEndpoint, s.dc
	s.mu.Unlock()
	if !valid {
		writeJSON(w, http.StatusOK, map[string]string{"error": "invalid_token"})
		return
	}
	if endpoint == "" {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		endpoint = proto + "://" + r.Host
	}
	login := strings.ToLower(strings.ReplaceAll(id.name, " ", "."))
	writeJSON(w, http.StatusOK, map[string]any{
		"dc":          dc,
		"role":        "owner",
		"accountname": id.name,
		"user_id":     id.userID,
		"login": map[string]any{
			"email": login + "@shop.example", "avatar": nil, "login_id": id.userID,
			"login_name": login, "login_email": login + "@shop.example",
		},
		"login_url":    endpoint,
		"api_endpoint": endpoint,
	})
}

// ident returns the account's stable identity.
func ident(account string) accountIdent {
	h := fnv.New32a()
	h.Write([]byte(account))
	return accountIdent{name: account, userID: int(h.Sum32()%90000000) + 10000000}
}

func oauthError(code, desc string) map[string]string {
	return map[string]string{"error": code, "error_description": desc}
}
