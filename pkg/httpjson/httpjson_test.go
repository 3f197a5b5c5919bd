package httpjson

import (
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, c := range []struct {
		name     string
		write    func(*httptest.ResponseRecorder)
		ct, body string
	}{
		{"Write", func(w *httptest.ResponseRecorder) { Write(w, 418, map[string]string{"url": "a?b=1&c=<2>"}) },
			"application/json", `{"url":"a?b=1\u0026c=\u003c2\u003e"}` + "\n"},
		{"Encode", func(w *httptest.ResponseRecorder) {
			Encode(w, 418, "application/json; charset=utf-8", false, map[string]string{"url": "a?b=1&c=<2>"})
		}, "application/json; charset=utf-8", `{"url":"a?b=1&c=<2>"}` + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c.write(w)
			if w.Code != 418 || w.Header().Get("Content-Type") != c.ct || w.Body.String() != c.body {
				t.Errorf("%d %q %q, want 418 %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.String(), c.ct, c.body)
			}
		})
	}
}
