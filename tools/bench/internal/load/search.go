package load

import (
	"context"
	"time"
)

// SearchPlan bounds the search for the highest rate held under an SLO.
type SearchPlan struct {
	// Start is the first rate tried; each success doubles it until Max.
	Start, Max float64
	// Step is how long each rate is held.
	Step time.Duration
	// Budget bounds the whole search (steps are not started past it).
	Budget time.Duration
	// P99 is the objective: a rate is held when p99 < P99 and nothing failed.
	P99 time.Duration
	// Precision ends the bisection when the bracket is narrower than this ratio (e.g. 1.1).
	Precision float64
}

// Step is one rate tried.
type Step struct {
	Rate   float64 `json:"rate"`
	Held   bool    `json:"held"`
	P99US  int64   `json:"p99_us"`
	Errors int64   `json:"errors"`
	Sent   int64   `json:"sent"`
}

// SearchResult is the highest rate held and the steps that found it.
type SearchResult struct {
	// Best is the highest rate held (0 when even Start failed).
	Best float64 `json:"best_rate"`
	// Ceiling is the lowest rate that failed (0 when none failed up to Max).
	Ceiling float64 `json:"lowest_failed_rate"`
	Steps   []Step  `json:"steps"`
	// Truncated is true when the budget ended the search before its precision.
	Truncated bool `json:"truncated"`
}

// Held reports whether an outcome met the objective.
func Held(o *Outcome, p99 time.Duration) bool {
	if o.Errors > 0 || o.OK == 0 {
		return false
	}
	return Summarize(o.Latency).P99 < p99.Microseconds()
}

// Search runs probe at rising rates (doubling from Start) until one fails or
// Max is held, then bisects between the last held and the first failed rate
// until the bracket is within Precision or the budget is spent. probe must run
// one step at the rate and return its outcome.
func Search(ctx context.Context, sp SearchPlan, probe func(ctx context.Context, rate float64) *Outcome) SearchResult {
	if sp.Precision <= 1 {
		sp.Precision = 1.1
	}
	deadline := time.Now().Add(sp.Budget)
	var res SearchResult
	try := func(rate float64) (held, ran bool) {
		if ctx.Err() != nil || time.Now().Add(sp.Step).After(deadline) {
			res.Truncated = true
			return false, false
		}
		o := probe(ctx, rate)
		held = Held(o, sp.P99)
		res.Steps = append(res.Steps, Step{Rate: rate, Held: held, P99US: Summarize(o.Latency).P99, Errors: o.Errors, Sent: o.Sent})
		return held, true
	}
	lo, hi := 0.0, 0.0
	for rate := sp.Start; ; rate *= 2 {
		if rate > sp.Max {
			rate = sp.Max
		}
		held, ran := try(rate)
		if !ran {
			break
		}
		if !held {
			hi = rate
			break
		}
		lo = rate
		if rate >= sp.Max {
			break
		}
	}
	for hi > 0 && (lo == 0 || hi/lo > sp.Precision) {
		mid := (lo + hi) / 2
		if lo == 0 {
			mid = hi / 2
			if mid < 1 {
				break
			}
		}
		held, ran := try(mid)
		if !ran {
			break
		}
		if held {
			lo = mid
		} else {
			hi = mid
		}
	}
	res.Best, res.Ceiling = lo, hi
	return res
}
