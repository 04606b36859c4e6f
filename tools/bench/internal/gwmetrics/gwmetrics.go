// Package gwmetrics reads the gateway's own step timings from its /metrics
// (bulwark_gateway_stage_duration_seconds and bulwark_gateway_overhead_seconds)
// before and after the measured slices, so that a bench run says where the
// added time went from inside the gateway as well as from outside.
package gwmetrics

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The gateway's histograms and the label that names each series.
var histograms = []struct{ name, label, prefix string }{
	{"bulwark_gateway_stage_duration_seconds", "stage", ""},
	{"bulwark_gateway_overhead_seconds", "streamed", "own time, streamed="},
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count uint64
}

// series is one histogram series at one moment.
type series struct {
	buckets []bucket
	count   uint64
	sum     float64
}

// Snapshot is the gateway's histograms at one moment, by step name.
type Snapshot map[string]series

// Scrape reads url (the gateway's /metrics).
func Scrape(ctx context.Context, hc *http.Client, url string) (Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return fromFamilies(fams), nil
}

func fromFamilies(fams map[string]*dto.MetricFamily) Snapshot {
	out := Snapshot{}
	for _, h := range histograms {
		f := fams[h.name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			hist := m.GetHistogram()
			if hist == nil {
				continue
			}
			name := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == h.label {
					name = h.prefix + l.GetValue()
				}
			}
			s := series{count: hist.GetSampleCount(), sum: hist.GetSampleSum()}
			for _, b := range hist.GetBucket() {
				s.buckets = append(s.buckets, bucket{le: b.GetUpperBound(), count: b.GetCumulativeCount()})
			}
			sort.Slice(s.buckets, func(i, j int) bool { return s.buckets[i].le < s.buckets[j].le })
			out[name] = s
		}
	}
	return out
}

// Step is one step's timings over the calls between two snapshots (µs).
type Step struct {
	Name  string  `json:"step"`
	Calls uint64  `json:"calls"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	Mean  float64 `json:"mean_us"`
}

// Steps are the timings of what happened between before and after, in the
// order the steps run; steps without calls are left out.
func Steps(before, after Snapshot) []Step {
	order := []string{"prepare", "reserve", "redact", "provider", "restore", "own time, streamed=false", "own time, streamed=true"}
	var out []Step
	for _, name := range order {
		a, ok := after[name]
		if !ok {
			continue
		}
		d := delta(before[name], a)
		if d.count == 0 {
			continue
		}
		out = append(out, Step{Name: name, Calls: d.count, P50: d.quantile(0.5) * 1e6, P90: d.quantile(0.9) * 1e6,
			P99: d.quantile(0.99) * 1e6, Mean: d.sum / float64(d.count) * 1e6})
	}
	return out
}

// delta is a minus b, bucket by bucket (b may be empty: a fresh gateway).
func delta(b, a series) series {
	out := series{count: a.count - min(a.count, b.count), sum: a.sum - b.sum}
	prev := map[float64]uint64{}
	for _, x := range b.buckets {
		prev[x.le] = x.count
	}
	for _, x := range a.buckets {
		out.buckets = append(out.buckets, bucket{le: x.le, count: x.count - min(x.count, prev[x.le])})
	}
	return out
}

// quantile interpolates linearly within the bucket holding the q-th
// observation, as Prometheus's histogram_quantile does; the open-ended last
// bucket reports its lower bound.
func (s series) quantile(q float64) float64 {
	if s.count == 0 || len(s.buckets) == 0 {
		return math.NaN()
	}
	rank := q * float64(s.count)
	lower, below := 0.0, uint64(0)
	for _, b := range s.buckets {
		if float64(b.count) >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			in := b.count - below
			if in == 0 {
				return b.le
			}
			return lower + (b.le-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = b.le, b.count
	}
	return lower
}
