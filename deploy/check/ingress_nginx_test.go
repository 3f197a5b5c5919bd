package check

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nginxAnnotation is ingress-nginx's annotation prefix.
const nginxAnnotation = "nginx.ingress.kubernetes.io/"

// The Ingress, where the overlays hand it to ingress-nginx: the body limit
// is the service's own for a Mandrill batch (nginx's default, 1 MB, refuses
// real batches), the proxy timeouts are the server's, and the per-client
// limits are set, as numbers in a range that neither throttles real
// deliveries nor leaves the limit meaningless.
func TestKustomizeIngressNginx(t *testing.T) {
	serviceLimit := goConst(t, "pkg/ingress", "MaxMandrillBody")
	readTimeout := goConst(t, "pkg/service", "readTimeout") / int64(time.Second)
	writeTimeout := goConst(t, "pkg/service", "writeTimeout") / int64(time.Second)
	forEachOverlay(t, func(t *testing.T, objs []obj) {
		ing := find(objs, "Ingress", "ingress")
		if ing == nil {
			t.Fatal("no Ingress")
		}
		if c := ing.str("spec", "ingressClassName"); c != "nginx" {
			t.Fatalf("ingressClassName %q: this test knows ingress-nginx's annotations only", c)
		}
		ann := func(name string) string {
			v, ok := ing.get("metadata", "annotations", nginxAnnotation+name).(string)
			if !ok {
				t.Errorf("no annotation %s%s (a string)", nginxAnnotation, name)
			}
			return v
		}
		if n, err := nginxSize(ann("proxy-body-size")); err != nil {
			t.Errorf("proxy-body-size: %v", err)
		} else if n != serviceLimit {
			t.Errorf("proxy-body-size %d bytes, the service's MaxMandrillBody %d: keep them equal (nginx answers 413 for what the service would take, or buffers what it would refuse)", n, serviceLimit)
		}
		// Unitless seconds, ingress-nginx's documented form. nginx sends the
		// request within the server's read timeout and waits for the answer
		// as long as the server's write timeout (from the request's
		// headers): shorter cuts off answers the service would give, longer
		// waits on a server that has given up.
		for name, want := range map[string]int64{"proxy-send-timeout": readTimeout, "proxy-read-timeout": writeTimeout} {
			if n, err := strconv.ParseInt(ann(name), 10, 64); err != nil || n != want {
				t.Errorf("%s %q, want %d (seconds, the service's HTTP server's bound)", name, ann(name), want)
			}
		}
		for name, bounds := range map[string][2]int{
			"limit-connections":      {10, 1000},
			"limit-rps":              {10, 1000},
			"limit-burst-multiplier": {1, 20},
		} {
			if n, err := strconv.Atoi(ann(name)); err != nil || n < bounds[0] || n > bounds[1] {
				t.Errorf("%s %q, want a whole number in [%d, %d]", name, ann(name), bounds[0], bounds[1])
			}
		}
	})
}

// nginxSize parses an nginx size ("8m", "512k", "1048576"): k and m are
// binary (KiB, MiB), as nginx reads them.
func nginxSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(strings.ToLower(s), "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("not a positive nginx size")
	}
	return n * mult, nil
}

// goConst evaluates an integer constant (a time.Duration too) of a package
// of this repository from its source, so a test states the relation, not a
// copy of the value.
func goConst(t *testing.T, dir, name string) int64 {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	paths, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, p, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	conf := types.Config{Importer: stdOnly{importer.Default()}, Error: func(error) {}} // unresolved imports are expected
	pkg, _ := conf.Check(dir, fset, files, nil)
	c, ok := pkg.Scope().Lookup(name).(*types.Const)
	if !ok || c.Val().Kind() != constant.Int {
		t.Fatalf("%s: no integer constant %s", dir, name)
	}
	n, exact := constant.Int64Val(c.Val())
	if !exact {
		t.Fatalf("%s.%s does not fit an int64", dir, name)
	}
	return n
}

// stdOnly imports the standard library (time.Second in a constant) and
// nothing else: the repository's own and third-party imports stay unread.
type stdOnly struct{ std types.Importer }

func (s stdOnly) Import(path string) (*types.Package, error) {
	if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
		return nil, errors.New("not loaded")
	}
	return s.std.Import(path)
}
