// Package testsupport holds what the pipeline's tests share: polling for a
// condition, and (in its other files) starting the stack and child roles.
// Only tests import it.
package testsupport

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it is true, failing t with what
// after within.
func WaitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	WaitForEvery(t, what, within, 10*time.Millisecond, cond)
}

// WaitForEvery is WaitFor polling every interval: for a cond that costs a
// request, or has one as a side effect.
func WaitForEvery(t testing.TB, what string, within, interval time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(interval)
	}
}

// Integration skips t under -short: the test starts child processes or
// real servers, or takes more than a couple of seconds. why says which.
func Integration(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: " + why)
	}
}
