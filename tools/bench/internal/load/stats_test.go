package load

import (
	"context"
	"testing"
	"time"
)

func record(values ...int64) *Outcome {
	o := Empty()
	for _, v := range values {
		_ = o.Latency.RecordValue(v)
	}
	return o
}

func series(from, to, shift int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v+shift)
	}
	return out
}

func TestSummarize_PercentilesOfAUniformSeries(t *testing.T) {
	s := Summarize(record(series(1, 1000, 0)...).Latency)
	want := Summary{Count: 1000, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	s.Mean = 0
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
}

func TestSummarize_EmptyHistogramIsZero(t *testing.T) {
	if s := Summarize(NewHistogram()); s != (Summary{}) {
		t.Fatalf("got %+v", s)
	}
}

// Added latency is the gateway percentile minus the direct one at the same percentile.
func TestAdded_IsThePerPercentileDifference(t *testing.T) {
	const shift = 300
	direct := Summarize(record(series(1, 1000, 0)...).Latency)
	gateway := Summarize(record(series(1, 1000, shift)...).Latency)
	a := Added(gateway, direct)
	for name, v := range map[string]int64{"p50": a.P50, "p90": a.P90, "p99": a.P99, "p99.9": a.P999, "max": a.Max} {
		if v != shift {
			t.Errorf("added %s = %d, want %d", name, v, shift)
		}
	}
	if a.Mean < shift-1 || a.Mean > shift+1 {
		t.Errorf("added mean %.1f, want about %d", a.Mean, shift)
	}
}

func TestMerge_CombinesSlices(t *testing.T) {
	a, b := record(series(1, 500, 0)...), record(series(501, 1000, 0)...)
	a.OK, b.OK, b.Errors, b.ErrorKinds["http 429"] = 500, 500, 2, 2
	a.Merge(b)
	s := Summarize(a.Latency)
	if s.Count != 1000 || s.P50 != 500 || s.Max != 1000 || a.OK != 1000 || a.Errors != 2 || a.ErrorKinds["http 429"] != 2 {
		t.Fatalf("merged %+v ok %d errors %d kinds %v", s, a.OK, a.Errors, a.ErrorKinds)
	}
}

// The search brackets the capacity of a system whose p99 crosses the objective at a known rate.
func TestSearch_FindsTheHighestRateHeldWithinPrecision(t *testing.T) {
	const capacity = 1234.0
	probe := func(_ context.Context, rate float64) *Outcome {
		o := Empty()
		lat := int64(2000) // 2 ms
		if rate > capacity {
			lat = 80000 // 80 ms: queueing
		}
		for i := 0; i < 100; i++ {
			_ = o.Latency.RecordValue(lat)
		}
		o.OK, o.Sent = 100, 100
		return o
	}
	r := Search(context.Background(), SearchPlan{Start: 250, Max: 16000, Step: time.Millisecond, Budget: time.Minute,
		P99: 50 * time.Millisecond, Precision: 1.05}, probe)
	if r.Best > capacity || r.Ceiling <= capacity || r.Ceiling/r.Best > 1.05 || r.Truncated {
		t.Fatalf("best %.0f ceiling %.0f truncated %v steps %+v; want best <= %.0f < ceiling within 5%%", r.Best, r.Ceiling, r.Truncated, r.Steps, capacity)
	}
	if r.Steps[0].Rate != 250 || !r.Steps[0].Held {
		t.Fatalf("first step %+v; want 250 held", r.Steps[0])
	}
}

func TestSearch_ErrorsFailAStepEvenWithLowLatency(t *testing.T) {
	probe := func(_ context.Context, rate float64) *Outcome {
		o := record(1000)
		o.OK, o.Sent = 1, 2
		if rate >= 1000 {
			o.Errors = 1
		}
		return o
	}
	r := Search(context.Background(), SearchPlan{Start: 250, Max: 4000, Step: time.Millisecond, Budget: time.Minute, P99: 50 * time.Millisecond}, probe)
	if r.Best >= 1000 || r.Best < 900 || r.Ceiling < 1000 {
		t.Fatalf("best %.0f ceiling %.0f; want just under 1000", r.Best, r.Ceiling)
	}
}

func TestSearch_StopsAtItsBudget(t *testing.T) {
	calls := 0
	r := Search(context.Background(), SearchPlan{Start: 250, Max: 4000, Step: time.Hour, Budget: time.Second, P99: time.Second},
		func(context.Context, float64) *Outcome { calls++; return record(1) })
	if calls != 0 || !r.Truncated || r.Best != 0 {
		t.Fatalf("calls %d truncated %v best %.0f; want no step past the budget", calls, r.Truncated, r.Best)
	}
}

func TestSearch_HoldingMaxEndsTheSearch(t *testing.T) {
	r := Search(context.Background(), SearchPlan{Start: 250, Max: 1000, Step: time.Millisecond, Budget: time.Minute, P99: time.Second},
		func(context.Context, float64) *Outcome { o := record(10); o.OK = 1; return o })
	if r.Best != 1000 || r.Ceiling != 0 || len(r.Steps) != 3 {
		t.Fatalf("best %.0f ceiling %.0f steps %+v; want 250, 500, 1000 held", r.Best, r.Ceiling, r.Steps)
	}
}
