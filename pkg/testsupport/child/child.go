// Package child runs a process of a harness as a child: the performance and
// adversarial harnesses start their services' binaries with it, and tests
// start their own binary in a role (testsupport.StartRole). A child's
// output goes to a log file it can be asked the tail of; its exit is
// watched, so a harness can tell an early death from a slow start; Stop is
// graceful (SIGTERM), then forceful (SIGKILL) after a grace.
//
// It does not import testing: the harnesses are programs, not tests.
package child

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is one child process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// Start runs exe with args and an environment of this process's, then env
// in order, the last word winning; its stdout and stderr go to log, which
// the caller owns.
func Start(name string, log *os.File, env []string, exe string, args ...string) (*Proc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill ends the child at once (SIGKILL); Done says when it is gone.
func (p *Proc) Kill() { p.cmd.Process.Kill() }

// Exited reports an early exit, with the tail of the child's log; nil
// while it runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v: %s", p.Name, p.err, p.Tail())
	default:
		return nil
	}
}

// Tail is the last 2000 bytes of the child's log.
func (p *Proc) Tail() string { return Tail(p.log, 2000) }

// Tail is the last n bytes of the file log.
func Tail(log *os.File, n int) string {
	b, _ := os.ReadFile(log.Name())
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Stop asks the child to shut down (SIGTERM) and waits for it; after grace
// it kills it (SIGKILL) and reports that it had to.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return true
	}
}
