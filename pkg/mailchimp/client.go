package mailchimp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
)

// API limits (docs/ARCHITECTURE.md §6.1).
const (
	MaxCount          = 1000
	MaxConcurrent     = 10
	CallTimeout       = 120 * time.Second
	timeLayout        = "2006-01-02T15:04:05+00:00"
	maxErrorBodyBytes = 8192
)

// Credentials authenticate to one Mailchimp account: an API key
// (`<key>-<dc>`, basic auth) or an OAuth token (bearer) with its data center.
type Credentials struct {
	APIKey string
	Token  string
	DC     string
	// APIURL overrides https://{dc}.api.mailchimp.com/3.0 (tests, proxies).
	APIURL string
}

// BaseURL is the API root for these credentials.
func (c Credentials) BaseURL() (string, error) {
	if c.APIURL != "" {
		return strings.TrimRight(c.APIURL, "/"), nil
	}
	dc := c.DC
	if c.APIKey != "" {
		i := strings.LastIndex(c.APIKey, "-")
		if i < 0 || i == len(c.APIKey)-1 {
			return "", errors.New("mailchimp: API key must end in -<dc>")
		}
		dc = c.APIKey[i+1:]
	}
	if dc == "" {
		return "", errors.New("mailchimp: no data center for the token")
	}
	return "https://" + dc + ".api.mailchimp.com/3.0", nil
}

// Account names the account for per-account limits without revealing the secret.
func (c Credentials) Account() string {
	secret := c.APIKey
	if secret == "" {
		secret = c.Token
	}
	return EmailID(secret)[:12]
}

// Classification of API errors: an error answer is a
// *httperr.StatusError whose Class is one of these, or nil when a later
// try may succeed.
var (
	// ErrNotFound: the campaign is gone; stop polling it.
	ErrNotFound = httperr.Permanent("mailchimp: not found")
	// ErrUnauthorized: the key or token was refused; the source needs reconnecting.
	ErrUnauthorized = httperr.Permanent("mailchimp: credentials refused")
	// errRefused: another answer retrying cannot change (400, 405 ...).
	errRefused = httperr.Permanent("mailchimp: request refused")
)

// Retryable reports whether err may succeed later: 429, 403 without a body
// (Mailchimp's other way of saying "too many connections"), 5xx, timeouts
// and transport failures.
func Retryable(err error) bool { return httperr.Retryable(err) }

// RetryAfter returns the wait Mailchimp asked for, if any.
func RetryAfter(err error) time.Duration { return httperr.Of(err) }

// classifyAnswer is Mailchimp's answer with its Class; title is its
// application/problem+json title, if any.
func classifyAnswer(se *httperr.StatusError, title string) *httperr.StatusError {
	switch s := se.Status; {
	case s == http.StatusNotFound:
		se.Class = ErrNotFound
	case s == http.StatusUnauthorized, s == http.StatusForbidden && title != "":
		se.Class = ErrUnauthorized
	case s == http.StatusTooManyRequests, s == http.StatusForbidden, s == http.StatusRequestTimeout, s >= 500:
		// a later try may succeed: no Class
	default:
		se.Class = errRefused
	}
	return se
}

// Client calls the Marketing API for one account.
type Client struct {
	cred    Credentials
	base    string
	http    *http.Client
	timeout time.Duration
}

// NewClient returns a client; hc nil means http.DefaultClient. Each call is
// bounded by Mailchimp's 120 s.
func NewClient(cred Credentials, hc *http.Client) (*Client, error) {
	base, err := cred.BaseURL()
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{cred: cred, base: base, http: hc, timeout: CallTimeout}, nil
}

// CampaignPage is one page of GET /campaigns, items byte-for-byte.
type CampaignPage struct {
	Campaigns  []json.RawMessage `json:"campaigns"`
	TotalItems int               `json:"total_items"`
}

// Campaigns lists sent campaigns sent at or after since.
func (c *Client) Campaigns(ctx context.Context, since time.Time, offset, count int) (CampaignPage, error) {
	q := url.Values{
		"status":     {"sent"},
		"sort_field": {"send_time"},
		"sort_dir":   {"ASC"},
		"offset":     {strconv.Itoa(offset)},
		"count":      {strconv.Itoa(min(count, MaxCount))},
	}
	if !since.IsZero() {
		q.Set("since_send_time", since.UTC().Format(timeLayout))
	}
	var p CampaignPage
	err := c.get(ctx, "/campaigns", q, &p)
	return p, err
}

// ActivityPage is one page of GET /reports/{id}/email-activity, items byte-for-byte.
type ActivityPage struct {
	Emails     []json.RawMessage `json:"emails"`
	TotalItems int               `json:"total_items"`
}

// EmailActivity returns one page of a campaign's member activity.
func (c *Client) EmailActivity(ctx context.Context, campaignID string, since time.Time, offset, count int) (ActivityPage, error) {
	q := url.Values{"offset": {strconv.Itoa(offset)}, "count": {strconv.Itoa(min(count, MaxCount))}}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(timeLayout))
	}
	var p ActivityPage
	err := c.get(ctx, "/reports/"+url.PathEscape(campaignID)+"/email-activity", q, &p)
	return p, err
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("mailchimp %s: %w", path, err)
	}
	if c.cred.APIKey != "" {
		req.SetBasicAuth("mailchimp-heap", c.cred.APIKey)
	} else {
		req.Header.Set("Authorization", "Bearer "+c.cred.Token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("mailchimp %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("mailchimp %s: %w", path, apiError(resp))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("mailchimp %s: %w", path, err)
	}
	// A refused OAuth token can come back as HTTP 200 {"error":"invalid_token"}.
	var probe struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.Error != "" {
		return fmt.Errorf("mailchimp %s: token refused: %w", path, &httperr.StatusError{
			API: "mailchimp", Status: http.StatusUnauthorized, Body: string(body[:min(len(body), maxErrorBodyBytes)]), Class: ErrUnauthorized})
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("mailchimp %s: malformed response: %w", path, err)
	}
	return nil
}

// apiError is resp's error answer, classified by its status and, from
// application/problem+json when present, its title.
func apiError(resp *http.Response) *httperr.StatusError {
	se := httperr.Read("mailchimp", resp, maxErrorBodyBytes)
	var p struct {
		Title string `json:"title"`
	}
	json.Unmarshal([]byte(se.Body), &p)
	return classifyAnswer(se, p.Title)
}
