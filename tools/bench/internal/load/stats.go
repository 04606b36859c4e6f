package load

import (
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Quantiles are the percentiles every summary reports.
var Quantiles = []float64{50, 90, 99, 99.9}

// Summary is a latency distribution in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p99_9_us"`
	Max   int64   `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// Summarize reads the reported percentiles from h.
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.TotalCount(),
		P50:   h.ValueAtQuantile(50),
		P90:   h.ValueAtQuantile(90),
		P99:   h.ValueAtQuantile(99),
		P999:  h.ValueAtQuantile(99.9),
		Max:   h.Max(),
		Mean:  h.Mean(),
	}
}

// Added is the gateway's latency minus the direct latency at each percentile
// (microseconds; negative when the direct path was slower at that percentile,
// which on a shared machine is noise). Count is the gateway's.
func Added(gateway, direct Summary) Summary {
	return Summary{
		Count: gateway.Count,
		P50:   gateway.P50 - direct.P50,
		P90:   gateway.P90 - direct.P90,
		P99:   gateway.P99 - direct.P99,
		P999:  gateway.P999 - direct.P999,
		Max:   gateway.Max - direct.Max,
		Mean:  gateway.Mean - direct.Mean,
	}
}
