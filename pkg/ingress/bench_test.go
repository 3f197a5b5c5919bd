package ingress_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/ingress"
	"github.com/mailchimp-heap/mailchimp-heap/pkg/mailchimp/fixtures"
)

// nopPublisher acknowledges at once: the benchmarks measure the handler.
type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, ...*kgo.Record) error { return nil }

func benchHandler(b *testing.B) http.Handler {
	b.Helper()
	ss := sources(&testing.T{})
	return ingress.NewHandler(ingress.Config{Sources: ss, Topic: "raw", Log: zap.NewNop()}, nopPublisher{})
}

func serve(b *testing.B, h http.Handler, path string, body []byte, hdr map[string]string) {
	for b.Loop() {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func BenchmarkAudienceWebhook(b *testing.B) {
	b.ReportAllocs()
	serve(b, benchHandler(b), "/webhooks/mailchimp/acme/"+secret, fixtures.Read("list-webhooks/cleaned-hard.form"), nil)
}

func BenchmarkMandrillBatch1000(b *testing.B) {
	t := &testing.T{}
	body, hdr := signed(t, fixtures.Mandrill().WebhookKey, mandrillBatch(1000))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	serve(b, benchHandler(b), "/webhooks/mandrill/acme", body, hdr)
}
