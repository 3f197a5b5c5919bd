package perf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one figure beside its floor.
type Row struct {
	Stage  string  `json:"stage"`
	Metric string  `json:"metric"`
	Unit   string  `json:"unit"`
	Figure float64 `json:"figure"`
	Floor  float64 `json:"floor,omitempty"` // 0: none
	// FloorIs says what the floor is.
	FloorIs string  `json:"floor_is,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"` // figure / floor
	Target  string  `json:"target,omitempty"`
	Met     *bool   `json:"met,omitempty"`
	Note    string  `json:"note,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs    int    `json:"cpus"`
	CPU     string `json:"cpu"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	LoadAvg string `json:"loadavg_at_start"`
}

// Report is one run.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Kafka    string    `json:"kafka"`
	Redis    string    `json:"redis"`
	Options  Options   `json:"options"`
	Rows     []Row     `json:"rows"`
	Failures []string  `json:"failures,omitempty"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

func met(ok bool) *bool { return &ok }

// Print writes the table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s, %s, %s, load average at start %s\n", r.Machine.CPUs, r.Machine.CPU, r.Machine.Go, r.Machine.OS, r.Machine.LoadAvg)
	fmt.Fprintf(w, "kafka:   %s\nredis:   %s\n\n", r.Kafka, r.Redis)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tmetric\tfigure\tfloor\tratio\ttarget\tmet")
	for _, row := range r.Rows {
		floor, ratio := "-", "-"
		if row.Floor != 0 {
			floor = num(row.Floor) + " " + row.Unit
		}
		if row.Ratio != 0 {
			ratio = fmt.Sprintf("%.0f%%", row.Ratio*100)
		}
		m := "-"
		if row.Met != nil {
			m = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", row.Stage, row.Metric, num(row.Figure), row.Unit, floor, ratio, row.Target, m)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		if row.FloorIs != "" || row.Note != "" {
			fmt.Fprintf(w, "  %s / %s: ", row.Stage, row.Metric)
			if row.FloorIs != "" {
				fmt.Fprintf(w, "floor = %s. ", row.FloorIs)
			}
			fmt.Fprintln(w, row.Note)
		}
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
	fmt.Fprintf(w, "\ntook %.0fs\n", r.Seconds)
}

func num(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error { return WriteJSON(path, r) }

// WriteJSON writes v to path as indented JSON: the harnesses' reports.
func WriteJSON(path string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
