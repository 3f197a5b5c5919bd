package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The image promises: multi-stage (no toolchain in the result), a static
// binary, a distroless base, a non-root user, and the files compose and the
// topic Job rely on (/probe, /etc/mailchimp-heap/topics.yaml).
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(from) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(from))
	}
	if final := from[len(from)-1][1]; !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.HasSuffix(final, ":nonroot") {
		t.Errorf("final stage from %s, want distroless static nonroot", final)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("the binary is not built with CGO_ENABLED=0 (static)")
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "0") || strings.HasPrefix(users[len(users)-1][1], "root") {
		t.Errorf("final USER %v, want a non-root uid", users)
	}
	for _, want := range []string{"/app", "/probe", "/etc/mailchimp-heap/topics.yaml"} {
		if !regexp.MustCompile(`(?m)^COPY .*\s` + regexp.QuoteMeta(want) + `$`).MatchString(df) {
			t.Errorf("the image lacks %s", want)
		}
	}
}
