package mailchimp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/httperr"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
)

// TestClientClassifiesAnswers: each answer Mailchimp gives maps to one
// decision: done, retry later, stop polling the campaign, or reconnect.
func TestClientClassifiesAnswers(t *testing.T) {
	cases := []struct {
		name                         string
		status                       int
		body                         string
		retryAfter                   string
		ok, retryable, gone, refused bool
		wait                         time.Duration
	}{
		{"page", 200, `{"emails":[],"total_items":0}`, "", true, false, false, false, 0},
		{"200 invalid_token", 200, `{"error":"invalid_token"}`, "", false, false, false, true, 0},
		{"401", 401, `{"title":"API Key Invalid","status":401}`, "", false, false, false, true, 0},
		{"403 with a body", 403, `{"title":"Forbidden","status":403}`, "", false, false, false, true, 0},
		{"403 without a body", 403, ``, "", false, true, false, false, 0},
		{"429", 429, `{"title":"Too Many Requests","status":429}`, "3", false, true, false, false, 3 * time.Second},
		{"404", 404, `{"title":"Resource Not Found","status":404}`, "", false, false, true, false, 0},
		{"500", 500, `oops`, "", false, true, false, false, 0},
		{"malformed 200", 200, `{"emails":`, "", false, true, false, false, 0},
		{"400 quoting an address", 400, `{"title":"Invalid Resource","status":400,"detail":"member jordan@example.com is invalid"}`, "", false, false, false, false, 0},
		{"408", 408, ``, "1", false, true, false, false, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if u, p, ok := r.BasicAuth(); !ok || u == "" || p != "abc-us19" {
					t.Errorf("basic auth %q %q", u, p)
				}
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
			}))
			defer srv.Close()
			cl, err := mailchimp.NewClient(mailchimp.Credentials{APIKey: "abc-us19", APIURL: srv.URL}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.EmailActivity(context.Background(), "c1", time.Time{}, 0, 1000)
			if (err == nil) != c.ok || mailchimp.Retryable(err) != c.retryable ||
				errors.Is(err, mailchimp.ErrNotFound) != c.gone || errors.Is(err, mailchimp.ErrUnauthorized) != c.refused ||
				mailchimp.RetryAfter(err) != c.wait {
				t.Fatalf("err %v: retryable %v gone %v refused %v wait %v", err, mailchimp.Retryable(err),
					errors.Is(err, mailchimp.ErrNotFound), errors.Is(err, mailchimp.ErrUnauthorized), mailchimp.RetryAfter(err))
			}
			// An error answer is shown with addresses redacted, and kept whole for inspection.
			var se *httperr.StatusError
			if c.status/100 != 2 && (!errors.As(err, &se) || se.Status != c.status || se.Body != c.body) {
				t.Errorf("err %v: want a StatusError of the answer", err)
			}
			if err != nil && strings.Contains(err.Error(), "@") {
				t.Errorf("err %q quotes an address", err)
			}
		})
	}
}

func TestCredentialsBaseURL(t *testing.T) {
	for _, c := range []struct {
		cred mailchimp.Credentials
		want string
		ok   bool
	}{
		{mailchimp.Credentials{APIKey: "0123-us19"}, "https://us19.api.mailchimp.com/3.0", true},
		{mailchimp.Credentials{Token: "t", DC: "us6"}, "https://us6.api.mailchimp.com/3.0", true},
		{mailchimp.Credentials{APIKey: "0123-us19", APIURL: "http://127.0.0.1:1/3.0/"}, "http://127.0.0.1:1/3.0", true},
		{mailchimp.Credentials{APIKey: "nodc"}, "", false},
		{mailchimp.Credentials{Token: "t"}, "", false},
	} {
		got, err := c.cred.BaseURL()
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("%+v: %q %v", c.cred, got, err)
		}
	}
}
