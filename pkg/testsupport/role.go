package testsupport

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mailchimp-heap/mailchimp-heap/pkg/testsupport/child"
)

// A role is the test binary re-run as a child process: a service a fault
// test can SIGKILL as an orchestrator would. TestMain calls RunRole first;
// the tests start roles with StartRole (once) or ExecRole (each start of a
// crash loop they run themselves).

// roleEnv names the role a re-run test binary plays.
const roleEnv = "TESTSUPPORT_ROLE"

// RunRole, called first in TestMain, runs the role this process was
// started in, if any, and exits with its code; otherwise it returns and the
// tests run.
func RunRole(roles map[string]func() int) {
	name := os.Getenv(roleEnv)
	if name == "" {
		return
	}
	fn, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "testsupport: no role %q\n", name)
		os.Exit(2)
	}
	os.Exit(fn())
}

// ExecRole starts the test binary in role with env (after this process's
// own), no tests run, its output to log.
func ExecRole(role string, log *os.File, env []string) (*child.Proc, error) {
	return child.Start(role, log, append(slices.Clip(env), roleEnv+"="+role), os.Args[0], "-test.run=^$")
}

// StartRole starts the test binary in role with env, its output to a log
// in t's temporary directory. When t ends the role is stopped (SIGTERM,
// SIGKILL after 30 s) and, if t failed, the log's tail is logged.
func StartRole(t testing.TB, role string, env []string) *child.Proc {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), role+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ExecRole(role, log, env)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(30 * time.Second)
		if t.Failed() {
			t.Logf("%s log tail:\n%s", role, child.Tail(log, 4000))
		}
		log.Close()
	})
	return p
}
