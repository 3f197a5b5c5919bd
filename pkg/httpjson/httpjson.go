// Package httpjson writes JSON answers: the one way the pipeline's handlers
// (ingress, the identity feed, readiness) and stand-ins answer in JSON.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as application/json, encoded as encoding/json
// encodes (<, > and & escaped) with a trailing newline.
func Write(w http.ResponseWriter, status int, v any) {
	Encode(w, status, "application/json", true, v)
}

// Encode answers status with v as JSON of contentType; escapeHTML is
// json.Encoder.SetEscapeHTML's (false: an API whose answers a stand-in
// imitates byte for byte writes <, > and & as they are).
func Encode(w http.ResponseWriter, status int, contentType string, escapeHTML bool, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(escapeHTML)
	enc.Encode(v)
}
