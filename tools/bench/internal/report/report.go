// Package report prints a bench run as a table or JSON.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/bulwarkhq/bulwark/tools/bench/internal/gwmetrics"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/load"
)

// SharedCores is printed with every result.
const SharedCores = "the load generator, the system under test and the provider simulator share this machine's CPU cores (2 on the reference machine): figures are comparable side by side within one run, not absolute"

// Side is one measured path (direct to the simulator, or through the gateway).
type Side struct {
	Name       string           `json:"name"`
	URL        string           `json:"url"`
	Scheduled  int              `json:"scheduled"`
	Sent       int64            `json:"sent"`
	OK         int64            `json:"ok"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	Total      load.Summary     `json:"total"`
	TTFT       *load.Summary    `json:"ttft,omitempty"`
	// GeneratorLagP99US is how late the generator started requests at p99 (µs).
	GeneratorLagP99US int64   `json:"generator_lag_p99_us"`
	AchievedRate      float64 `json:"achieved_rate"`
	// CPUPerCallUS is the CPU time (user+system) of every process the run
	// started (system under test, simulator, Redis/NATS/Vault children), divided
	// by the requests sent on this side; 0 when not measured (URL target).
	CPUPerCallUS float64 `json:"cpu_per_call_us,omitempty"`
	// CPUPerCallByProcessUS splits CPUPerCallUS by process name.
	CPUPerCallByProcessUS map[string]float64 `json:"cpu_per_call_by_process_us,omitempty"`
}

// SetCPU records the CPU time (by process name) the run's processes used during this side's slices.
func (s *Side) SetCPU(cpu map[string]time.Duration) {
	if s.Sent == 0 {
		return
	}
	for name, d := range cpu {
		if d <= 0 {
			continue
		}
		if s.CPUPerCallByProcessUS == nil {
			s.CPUPerCallByProcessUS = map[string]float64{}
		}
		v := float64(d.Microseconds()) / float64(s.Sent)
		s.CPUPerCallByProcessUS[name] = v
		s.CPUPerCallUS += v
	}
}

// FromOutcome summarizes a run.
func FromOutcome(name, url string, o *load.Outcome, stream bool, active time.Duration) Side {
	s := Side{Name: name, URL: url, Scheduled: o.Scheduled, Sent: o.Sent, OK: o.OK, Errors: o.Errors, ErrorKinds: o.ErrorKinds,
		Total: load.Summarize(o.Latency), GeneratorLagP99US: load.Summarize(o.Lag).P99}
	if len(s.ErrorKinds) == 0 {
		s.ErrorKinds = nil
	}
	if stream {
		t := load.Summarize(o.TTFT)
		s.TTFT = &t
	}
	if active > 0 {
		s.AchievedRate = float64(o.Sent) / active.Seconds()
	}
	return s
}

// Result is a whole run.
type Result struct {
	Target     string        `json:"target"`
	Stream     bool          `json:"stream"`
	Rate       float64       `json:"rate"`
	Duration   string        `json:"duration_per_side"`
	Slices     int           `json:"slices"`
	Model      string        `json:"model"`
	PromptByte int           `json:"prompt_bytes"`
	Started    time.Time     `json:"started"`
	Direct     *Side         `json:"direct,omitempty"`
	Gateway    Side          `json:"gateway"`
	Added      *load.Summary `json:"added_total,omitempty"`
	AddedTTFT  *load.Summary `json:"added_ttft,omitempty"`
	// AddedCPUPerCallUS is gateway minus direct CPU per call (µs).
	AddedCPUPerCallUS *float64 `json:"added_cpu_per_call_us,omitempty"`
	// Steps are the gateway's own step timings over the gateway slices, from
	// its /metrics (absent when it exposes none).
	Steps     []gwmetrics.Step   `json:"gateway_steps,omitempty"`
	Search    *load.SearchResult `json:"max_rate_search,omitempty"`
	SearchSLO string             `json:"max_rate_slo,omitempty"`
	Notes     []string           `json:"notes"`
}

// JSON writes r as indented JSON.
func JSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func ms(us int64) string { return fmt.Sprintf("%.3f", float64(us)/1000) }

// Table writes r for people.
func Table(w io.Writer, r *Result) {
	mode := "non-streaming"
	if r.Stream {
		mode = "streaming"
	}
	fmt.Fprintf(w, "bulwark bench: target %s, %s POST /v1/chat/completions, model %s, prompt %d bytes\n", r.Target, mode, r.Model, r.PromptByte)
	fmt.Fprintf(w, "open loop at %.0f req/s, %s per side in %d alternating slices (direct, gateway, direct, ...)\n", r.Rate, r.Duration, r.Slices)
	fmt.Fprintf(w, "NOTE: %s\n", SharedCores)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tsent\tok\terrors\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, sent, ok, errs string, s load.Summary) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, sent, ok, errs, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	side := func(label string, s *Side, sum load.Summary) {
		row(label, fmt.Sprint(s.Sent), fmt.Sprint(s.OK), fmt.Sprint(s.Errors), sum)
	}
	if r.Direct != nil {
		side("direct total", r.Direct, r.Direct.Total)
	}
	side("gateway total", &r.Gateway, r.Gateway.Total)
	if r.Added != nil {
		row("ADDED total", "", "", "", *r.Added)
	}
	if r.Stream {
		if r.Direct != nil && r.Direct.TTFT != nil {
			side("direct TTFT", r.Direct, *r.Direct.TTFT)
		}
		if r.Gateway.TTFT != nil {
			side("gateway TTFT", &r.Gateway, *r.Gateway.TTFT)
		}
		if r.AddedTTFT != nil {
			row("ADDED TTFT", "", "", "", *r.AddedTTFT)
		}
	}
	tw.Flush()
	for _, s := range []*Side{r.Direct, &r.Gateway} {
		if s == nil {
			continue
		}
		fmt.Fprintf(w, "%s: achieved %.0f req/s, generator lag p99 %s ms", s.Name, s.AchievedRate, ms(s.GeneratorLagP99US))
		if s.CPUPerCallUS > 0 {
			fmt.Fprintf(w, ", CPU per call %.0f µs (", s.CPUPerCallUS)
			names := make([]string, 0, len(s.CPUPerCallByProcessUS))
			for n := range s.CPUPerCallByProcessUS {
				names = append(names, n)
			}
			sort.Slice(names, func(i, j int) bool { return s.CPUPerCallByProcessUS[names[i]] > s.CPUPerCallByProcessUS[names[j]] })
			for i, n := range names {
				if i > 0 {
					fmt.Fprint(w, ", ")
				}
				fmt.Fprintf(w, "%s %.0f", n, s.CPUPerCallByProcessUS[n])
			}
			fmt.Fprint(w, ")")
		}
		if len(s.ErrorKinds) > 0 {
			keys := make([]string, 0, len(s.ErrorKinds))
			for k := range s.ErrorKinds {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprint(w, "; errors:")
			for _, k := range keys {
				fmt.Fprintf(w, " %s=%d", k, s.ErrorKinds[k])
			}
		}
		fmt.Fprintln(w)
	}
	if r.AddedCPUPerCallUS != nil {
		fmt.Fprintf(w, "ADDED CPU per call: %.0f µs (all processes the run started; CPU time does not depend on how busy the machine is)\n", *r.AddedCPUPerCallUS)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "\ninside the gateway (its bulwark_gateway_* histograms over the gateway slices; bucket-interpolated):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "step (ms)\tcalls\tp50\tp90\tp99\tmean\t")
		for _, st := range r.Steps {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t\n", st.Name, st.Calls, st.P50/1000, st.P90/1000, st.P99/1000, st.Mean/1000)
		}
		tw.Flush()
	}
	if r.Search != nil {
		fmt.Fprintf(w, "\nhighest rate held through the gateway with %s (no errors):", r.SearchSLO)
		if r.Search.Best > 0 {
			fmt.Fprintf(w, " %.0f req/s", r.Search.Best)
		} else {
			fmt.Fprint(w, " none of the rates tried")
		}
		if r.Search.Ceiling > 0 {
			fmt.Fprintf(w, " (%.0f req/s failed)", r.Search.Ceiling)
		}
		if r.Search.Truncated {
			fmt.Fprint(w, " [search cut by its time budget]")
		}
		fmt.Fprintln(w)
		for _, s := range r.Search.Steps {
			v := "held"
			if !s.Held {
				v = "FAILED"
			}
			fmt.Fprintf(w, "  %6.0f req/s: p99 %s ms, %d errors of %d sent: %s\n", s.Rate, ms(s.P99US), s.Errors, s.Sent, v)
		}
	}
}
