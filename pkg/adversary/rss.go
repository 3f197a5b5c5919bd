package adversary

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is one reading of the ingress process's resident set.
type Sample struct {
	Ms     int64   `json:"ms"` // since the attack started
	RSSMiB float64 `json:"rss_mib"`
}

// SampleEvery is how often the sampler reads /proc.
const SampleEvery = 100 * time.Millisecond

// sampler reads a process's memory every SampleEvery. Past capAt (of
// RSS) it calls onCap once (the attack stops: "over the cap"); past killAt
// it calls onKill once (the process is killed before it takes the machine).
type sampler struct {
	pid            int
	capAt, killAt  int64 // bytes; 0: never
	onCap, onKill  func()
	start          time.Time
	mu             sync.Mutex
	samples        []Sample
	peak           int64 // max of every VmRSS and VmHWM read
	virt           int64 // the last VmPeak read: the largest address space
	capped, killed bool
	readErr        error // the process went away
}

func newSampler(pid int, capAt int64, onCap, onKill func()) *sampler {
	s := &sampler{pid: pid, capAt: capAt, onCap: onCap, onKill: onKill, start: time.Now()}
	if capAt > 0 {
		s.killAt = capAt + capAt/2
	}
	return s
}

// run samples until ctx ends or the process is gone.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(SampleEvery)
	defer t.Stop()
	for {
		if !s.sample() {
			return
		}
		select {
		case <-ctx.Done():
			s.sample() // the last word: VmHWM covers what fell between samples
			return
		case <-t.C:
		}
	}
}

// sample takes one reading and reports whether the process is still there.
func (s *sampler) sample() bool {
	m, err := readStatus(s.pid)
	s.mu.Lock()
	if err != nil {
		if s.readErr == nil {
			s.readErr = err
		}
		s.mu.Unlock()
		return false
	}
	s.samples = append(s.samples, Sample{Ms: time.Since(s.start).Milliseconds(), RSSMiB: mib(m.RSS)})
	s.peak = max(s.peak, m.RSS, m.HWM)
	s.virt = max(s.virt, m.VirtPeak)
	over := s.capAt > 0 && s.peak > s.capAt && !s.capped
	kill := s.killAt > 0 && m.RSS > s.killAt && !s.killed
	s.capped = s.capped || over
	s.killed = s.killed || kill
	s.mu.Unlock()
	if over && s.onCap != nil {
		s.onCap()
	}
	if kill && s.onKill != nil {
		s.onKill()
	}
	return true
}

// sampled is what a sampler saw.
type sampled struct {
	peak, virt     int64 // peak RSS and peak address space, bytes
	capped, killed bool
	samples        []Sample
}

func (s *sampler) result() sampled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sampled{peak: s.peak, virt: s.virt, capped: s.capped, killed: s.killed, samples: append([]Sample(nil), s.samples...)}
}

// procMem is a process's memory as /proc/<pid>/status reports it, in bytes.
type procMem struct {
	RSS      int64 // VmRSS: resident now
	HWM      int64 // VmHWM: the resident peak
	VirtPeak int64 // VmPeak: the address space's peak (reserved, not resident)
}

func readStatus(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, fmt.Errorf("RSS needs Linux's /proc: %w", err)
	}
	return parseStatus(string(b))
}

// parseStatus reads VmRSS, VmHWM and VmPeak from /proc/<pid>/status. A
// zombie has none: that is an error (the process is gone).
func parseStatus(status string) (procMem, error) {
	var m procMem
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "VmPeak": &m.VirtPeak}
	seen := 0
	for l := range strings.SplitSeq(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		dst := fields[k]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return procMem{}, fmt.Errorf("/proc status: %s: %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return procMem{}, fmt.Errorf("/proc status: %s: %w", k, err)
		}
		*dst = n << 10
		seen++
	}
	if seen != len(fields) {
		return procMem{}, errors.New("/proc status: no VmRSS, VmHWM and VmPeak (the process exited)")
	}
	return m, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
