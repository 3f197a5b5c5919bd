package mapping_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure: the mapping depends on no Kafka or Redis client, directly or
// through another package (config and campaigns bring both).
func TestPure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "franz-go") || strings.Contains(dep, "redis") {
			t.Errorf("mapping depends on %s", dep)
		}
	}
}
