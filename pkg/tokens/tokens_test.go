package tokens_test

import (
	"errors"
	"testing"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/tokens"
)

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		endpoint string
		wantDC   string // "" when refused
	}{
		{"https://us21.api.mailchimp.com", "us21"},
		{"https://us1.api.mailchimp.com/", "us1"},
		{"https://evil.example", ""},
		{"http://us21.api.mailchimp.com", ""},
		{"https://us21.api.mailchimp.com.evil.example", ""},
		{"https://evil.example/us21.api.mailchimp.com", ""},
		{"https://evil.example?.api.mailchimp.com", ""},
		{"https://us21.api.mailchimp.com@evil.example", ""},
		{"https://user@us21.api.mailchimp.com", ""},
		{"https://us21.api.mailchimp.com:443", ""},
		{"https://us21.api.mailchimp.com/3.0", ""},
		{"https://us21.api.mailchimp.com/?x=1", ""},
		{"https://us21.api.mailchimp.com/#x", ""},
		{"https://us21.api.mailchimp.com.", ""},
		{"https://US21.api.mailchimp.com", ""},
		{"https://api.mailchimp.com", ""},
		{"https://evil.us21.api.mailchimp.com", ""},
		{"https://us2100.api.mailchimp.com", ""},
		{"https://login.mailchimp.com", ""},
		{"//us21.api.mailchimp.com", ""},
		{"us21.api.mailchimp.com", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			dc, err := tokens.CheckEndpoint(tt.endpoint)
			if tt.wantDC == "" {
				if err == nil || !errors.Is(err, tokens.ErrEndpoint) {
					t.Fatalf("CheckEndpoint(%q) = %q, %v; want ErrEndpoint", tt.endpoint, dc, err)
				}
				return
			}
			if err != nil || dc != tt.wantDC {
				t.Fatalf("CheckEndpoint(%q) = %q, %v; want %q", tt.endpoint, dc, err, tt.wantDC)
			}
		})
	}
}

func TestTokenAPIURL(t *testing.T) {
	tests := []struct {
		name string
		tok  tokens.Token
		want string // "" when refused
	}{
		{"endpoint and dc agree", tokens.Token{DC: "us21", APIEndpoint: "https://us21.api.mailchimp.com"}, "https://us21.api.mailchimp.com/3.0"},
		{"dc alone", tokens.Token{DC: "us6"}, "https://us6.api.mailchimp.com/3.0"},
		{"endpoint of another dc", tokens.Token{DC: "us21", APIEndpoint: "https://us6.api.mailchimp.com"}, ""},
		{"foreign endpoint", tokens.Token{DC: "us21", APIEndpoint: "https://evil.example"}, ""},
		{"no dc", tokens.Token{APIEndpoint: "https://us21.api.mailchimp.com"}, ""},
		{"dc that is a host", tokens.Token{DC: "evil.example#"}, ""},
		{"dc with a path", tokens.Token{DC: "us21.api.mailchimp.com/x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.tok.APIURL()
			if tt.want == "" {
				if err == nil || !errors.Is(err, tokens.ErrEndpoint) {
					t.Fatalf("APIURL() = %q, %v; want ErrEndpoint", got, err)
				}
				if tt.tok.Check() == nil {
					t.Fatal("Check() accepted what APIURL refused")
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("APIURL() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
