package gwmetrics

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t *testing.T, text string) Snapshot {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return fromFamilies(fams)
}

const before = `# TYPE bulwark_gateway_stage_duration_seconds histogram
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0001"} 10
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0002"} 10
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0004"} 10
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="+Inf"} 10
bulwark_gateway_stage_duration_seconds_sum{stage="reserve"} 0.0005
bulwark_gateway_stage_duration_seconds_count{stage="reserve"} 10
`

// After 100 more reservations: 50 in (100, 200] µs, 40 in (200, 400] µs, 10 above.
const after = `# TYPE bulwark_gateway_stage_duration_seconds histogram
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0001"} 10
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0002"} 60
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="0.0004"} 100
bulwark_gateway_stage_duration_seconds_bucket{stage="reserve",le="+Inf"} 110
bulwark_gateway_stage_duration_seconds_sum{stage="reserve"} 0.0305
bulwark_gateway_stage_duration_seconds_count{stage="reserve"} 110
# TYPE bulwark_gateway_overhead_seconds histogram
bulwark_gateway_overhead_seconds_bucket{streamed="false",le="0.001"} 4
bulwark_gateway_overhead_seconds_bucket{streamed="false",le="+Inf"} 4
bulwark_gateway_overhead_seconds_sum{streamed="false"} 0.002
bulwark_gateway_overhead_seconds_count{streamed="false"} 4
`

func TestSteps_AreTheCallsBetweenTwoScrapes(t *testing.T) {
	steps := Steps(parse(t, before), parse(t, after))
	if len(steps) != 2 || steps[0].Name != "reserve" || steps[1].Name != "own time, streamed=false" {
		t.Fatalf("steps %+v", steps)
	}
	r := steps[0]
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6 }
	// p50: rank 50 of 100 falls in (100, 200] µs, 50 calls there: 100 + 100*50/50.
	// p90: rank 90 falls in (200, 400]: 200 + 200*(90-50)/40. p99 is in +Inf: its lower bound.
	if r.Calls != 100 || !near(r.P50, 200) || !near(r.P90, 400) || !near(r.P99, 400) || !near(r.Mean, 300) {
		t.Fatalf("reserve %+v; want 100 calls, p50 200, p90 400, p99 400, mean 300 µs", r)
	}
	// A gateway scraped for the first time after the run counts from zero.
	if o := steps[1]; o.Calls != 4 || !near(o.Mean, 500) || !near(o.P50, 500) {
		t.Fatalf("own time %+v", o)
	}
}

func TestSteps_LeaveOutStepsWithoutCalls(t *testing.T) {
	if s := Steps(parse(t, after), parse(t, after)); len(s) != 0 {
		t.Fatalf("no calls between identical scrapes, got %+v", s)
	}
}
