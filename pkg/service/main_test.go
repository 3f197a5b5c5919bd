package service

import (
	"runtime/debug"
	"testing"
)

// TestSetGC: the emitter's GOGC defaults to 150; a GOGC in the environment,
// which the runtime already applied, and other services are left alone.
func TestSetGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tests := []struct {
		name, service, gogc string
		want                int
	}{
		{"emitter", "emitter", "", 150},
		{"emitter with GOGC set", "emitter", "300", 100},
		{"mapper", "mapper", "", 100},
		{"ingress", "ingress", "", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			t.Setenv("GOGC", tt.gogc)
			setGC(tt.service)
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GOGC %d, want %d", got, tt.want)
			}
		})
	}
}
