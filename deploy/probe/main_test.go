package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/notready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if err := check(srv.URL+"/readyz", 5*time.Second); err != nil {
		t.Errorf("ready: %v", err)
	}
	if err := check(srv.URL+"/notready", 5*time.Second); err == nil {
		t.Error("503 passed the check")
	}
	if err := check("ftp://example.com/", 5*time.Second); err == nil {
		t.Error("a non-http URL passed the check")
	}
	srv.Close()
	if err := check(srv.URL+"/readyz", 5*time.Second); err == nil {
		t.Error("a closed server passed the check")
	}
}
