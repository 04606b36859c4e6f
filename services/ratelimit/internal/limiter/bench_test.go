package limiter

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// latencies collects per-operation durations from parallel goroutines and
// reports decisions per second and the 99th percentile.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	p := func(q float64) float64 {
		return float64(l.all[min(len(l.all)-1, int(q*float64(len(l.all))))].Microseconds())
	}
	b.ReportMetric(float64(len(l.all))/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// benchLimits is a realistic policy: four limits evaluated per request.
func benchLimits() []Limit {
	return []Limit{
		{Name: "rpm", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 1_000_000, Burst: 1_000_000, Period: time.Minute},
		{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 1_000_000_000, Period: time.Minute},
		{Name: "team-day", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 1_000_000_000_000, Calendar: CalendarDay},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 1_000_000},
	}
}

// BenchmarkReserve measures Reserve decisions against the real Redis,
// in-process, with four limits per decision spread over 1,000 subjects:
// "parallel" with 16 client goroutines, "parallel-8" with 8 (on two cores the
// throughput is already at its ceiling with 8 decisions in flight; more only
// queue, and the latency grows with them), "parallel-1limit" the
// same with a single requests limit per decision, "parallel-settled" where
// every reservation is settled right after it is granted, as the gateway does
// (decisions/s then counts reserve and settle pairs, the latencies are those of
// Reserve), and "serial" with one goroutine (the latency of one decision
// without queueing). Without settles the reservation sets grow for the whole
// run, which makes "parallel" the pessimistic case. "parallel-unbatched" is
// "parallel" with every decision in a round trip of its own (a lane per
// client goroutine), to show what sharing round trips (see batcher) gains.
func BenchmarkReserve(b *testing.B) {
	b.Run("parallel", func(b *testing.B) { benchReserve(b, 16, 0, benchLimits(), false) })
	b.Run("parallel-unbatched", func(b *testing.B) { benchReserve(b, 16, 64, benchLimits(), false) })
	b.Run("parallel-8", func(b *testing.B) { benchReserve(b, 8, 0, benchLimits(), false) })
	b.Run("parallel-1limit", func(b *testing.B) { benchReserve(b, 16, 0, benchLimits()[:1], false) })
	b.Run("parallel-settled", func(b *testing.B) { benchReserve(b, 16, 0, benchLimits(), true) })
	b.Run("serial", func(b *testing.B) { benchReserve(b, 0, 0, benchLimits(), false) })
}

// benchReserve runs about the given number of client goroutines (rounded to a
// multiple of GOMAXPROCS), or one loop when it is 0, on a limiter with the
// given lanes (0 for the default).
func benchReserve(b *testing.B, goroutines, lanes int, limits []Limit, settle bool) {
	rdb, prefix := platformtest.Redis(b)
	pool := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, PoolSize: 64, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = pool.Close() })
	l, err := New(context.Background(), Params{Redis: pool, Prefix: prefix, Lanes: lanes})
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	var lat latencies
	one := func(local *[]time.Duration) bool {
		n := seq.Add(1)
		s := Subject{APIKeyID: fmt.Sprint("k", n%1000), PrincipalID: fmt.Sprint("p", n%1000), TeamID: fmt.Sprint("t", n%50), Model: "gpt-4o", Environment: "prod"}
		t0 := time.Now()
		d, err := l.Reserve(context.Background(), ReserveRequest{Subject: s, Limits: limits, InputTokens: 500, MaxOutputTokens: 500, TTL: time.Minute})
		*local = append(*local, time.Since(t0))
		if err != nil || !d.Allowed {
			b.Errorf("reserve: %v %+v", err, d)
			return false
		}
		if settle {
			if r, err := l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 500, OutputTokens: 200}); err != nil || !r.Settled {
				b.Errorf("settle: %v %+v", err, r)
				return false
			}
		}
		return true
	}
	b.ResetTimer()
	start := time.Now()
	if goroutines == 0 {
		local := make([]time.Duration, 0, b.N)
		for range b.N {
			if !one(&local) {
				break
			}
		}
		lat.add(local)
	} else {
		b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			local := make([]time.Duration, 0, 1024)
			for pb.Next() {
				if !one(&local) {
					return
				}
			}
			lat.add(local)
		})
	}
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}

// BenchmarkBaselineRoundTrip is the floor to compare BenchmarkReserve with in
// the same run: one EVALSHA of a one-command script through the same client
// and the same parallelism. On a shared 2-core machine absolute figures move
// with the load; the ratio between the two does not.
func BenchmarkBaselineRoundTrip(b *testing.B) {
	rdb, prefix := platformtest.Redis(b)
	pool := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, PoolSize: 64, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = pool.Close() })
	incr := redis.NewScript(`return redis.call('INCR', KEYS[1])`)
	if err := incr.Load(context.Background(), pool).Err(); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	var lat latencies
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			key := fmt.Sprint(prefix, "{k", seq.Add(1)%1000, "}")
			t0 := time.Now()
			err := incr.Run(context.Background(), pool, []string{key}).Err()
			local = append(local, time.Since(t0))
			if err != nil {
				b.Error(err)
				return
			}
		}
		lat.add(local)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}
