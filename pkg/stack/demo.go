package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/source"
)

// SendDemo posts the fixture webhooks to ingress as Mailchimp would: the
// campaign webhook first (it names the campaign), then the other audience
// webhooks, then the Mandrill batch signed with src's key.
func SendDemo(ctx context.Context, ingressURL string, src source.Source) error {
	hooks := fixtures.ListWebhooks()
	order := []string{"campaign"}
	for _, n := range fixtures.ListWebhookNames() {
		if n != "campaign" {
			order = append(order, n)
		}
	}
	listURL := fmt.Sprintf("%s/webhooks/mailchimp/%s/%s", ingressURL, src.ID, src.WebhookSecret)
	for _, n := range order {
		if err := post(ctx, listURL, hooks[n], nil); err != nil {
			return fmt.Errorf("demo %s: %w", n, err)
		}
	}
	body := fixtures.Read("mandrill/webhook.form")
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return err
	}
	sig := mailchimp.MandrillSignature(src.MandrillWebhookURL, src.MandrillWebhookKey, form)
	hdr := http.Header{mailchimp.MandrillSignatureHdr: {sig}}
	if err := post(ctx, fmt.Sprintf("%s/webhooks/mandrill/%s", ingressURL, src.ID), body, hdr); err != nil {
		return fmt.Errorf("demo mandrill: %w", err)
	}
	return nil
}

func post(ctx context.Context, u string, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
