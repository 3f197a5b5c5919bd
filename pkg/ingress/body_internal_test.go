package ingress

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBodyRead: what a body costs the budget and its buffer, by what the
// sender declared and what it sent.
func TestBodyRead(t *testing.T) {
	tests := []struct {
		name     string
		declared int64 // Content-Length; -1: none (chunked)
		sent     int
		wantErr  bool
		limit    int64 // 0: MaxListBody
		wantCap  int   // the buffer's capacity, 0: not checked
	}{
		{name: "a small form, declared", declared: 300, sent: 300, wantCap: 301},
		{name: "a small form, undeclared", declared: -1, sent: 300, wantCap: growStep},
		{name: "declared small, sent more", declared: 10, sent: 200_000, limit: MaxMandrillBody},
		{name: "declared larger than sent", declared: 50_000, sent: 100, wantCap: 50_001},
		{name: "over the limit", declared: -1, sent: MaxListBody + 1, wantErr: true},
		{name: "declared over the limit", declared: MaxListBody + 1, sent: 10, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := strings.Repeat("a", tt.sent)
			r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(payload)))
			r.ContentLength = tt.declared
			limit := tt.limit
			if limit == 0 {
				limit = MaxListBody
			}
			b := newBudget(1 << 20)
			bd := &body{b: b}
			p := bd.read(httptest.NewRecorder(), r, limit)
			if (p != nil) != tt.wantErr {
				t.Fatalf("read: %v, want error %v", p, tt.wantErr)
			}
			if p == nil && string(bd.buf) != payload {
				t.Fatalf("read %d bytes, want the %d sent", len(bd.buf), tt.sent)
			}
			if tt.wantCap != 0 && cap(bd.buf) != tt.wantCap {
				t.Errorf("buffer capacity %d, want %d", cap(bd.buf), tt.wantCap)
			}
			if bd.held < int64(cap(bd.buf)) {
				t.Errorf("budget held %d for a buffer of %d", bd.held, cap(bd.buf))
			}
			bd.release()
			if !b.sem.TryAcquire(1 << 20) {
				t.Error("the budget was not all given back")
			}
		})
	}
}
