package ratelimit_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/durationpb"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit/ratelimitclient"
)

// BenchmarkReserveConnect measures Reserve decisions over Connect and gRPC
// (loopback, protobuf) against the real Redis: four limits per decision over
// 1,000 subjects. Client, server and Redis share the two cores.
// "batched" is the Connect client wrapped as the gateway uses it in split mode
// (ratelimitclient.Batching, two lanes): concurrent decisions share
// ReserveBatch calls. 16 client goroutines, or 32 where the name says so.
func BenchmarkReserveConnect(b *testing.B) {
	for _, bc := range []struct {
		name, proto string
		batched     bool
		goroutines  int
	}{
		{"connect", "connect", false, 16},
		{"grpc", "grpc", false, 16},
		{"batched", "connect", true, 16},
		{"connect-32", "connect", false, 32},
		{"batched-32", "connect", true, 32},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rdb, prefix := platformtest.Redis(b)
			pool := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, PoolSize: 64, ContextTimeoutEnabled: true})
			b.Cleanup(func() { _ = pool.Close() })
			c := start(b, pool, prefix, nil).clients[bc.proto]
			if bc.batched {
				c = ratelimitclient.NewBatching(c, 2)
			}
			benchClient(b, c, bc.goroutines)
		})
	}
}

// benchClient runs about the given number of client goroutines (rounded to a
// multiple of GOMAXPROCS).
func benchClient(b *testing.B, c ratelimitv1connect.RateLimitServiceClient, goroutines int) {
	lim := []*ratelimitv1.LimitSpec{
		{Name: "rpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY},
			Limit: 1_000_000, Burst: 1_000_000, Period: durationpb.New(time.Minute)},
		{Name: "tpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_TOKENS, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_PRINCIPAL},
			Limit: 1_000_000_000, Period: durationpb.New(time.Minute)},
		{Name: "team-day", Kind: ratelimitv1.LimitKind_LIMIT_KIND_SPEND, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_TEAM},
			Limit: 1_000_000_000_000, CalendarPeriod: "day"},
		{Name: "inflight", Kind: ratelimitv1.LimitKind_LIMIT_KIND_CONCURRENCY, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY}, Limit: 1_000_000},
	}
	var seq atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			n := seq.Add(1)
			req := connect.NewRequest(&ratelimitv1.ReserveRequest{
				Subject: &ratelimitv1.Subject{ApiKeyId: fmt.Sprint("k", n%1000), PrincipalId: fmt.Sprint("p", n%1000), TeamId: fmt.Sprint("t", n%50),
					Model: "gpt-4o", Environment: "prod"},
				Limits: lim, EstimatedInputTokens: 500, MaxOutputTokens: 500, Ttl: durationpb.New(5 * time.Second)})
			t0 := time.Now()
			res, err := c.Reserve(context.Background(), req)
			local = append(local, time.Since(t0))
			if err != nil || !res.Msg.GetAllowed() {
				b.Errorf("reserve: %v", err)
				return
			}
		}
		mu.Lock()
		all = append(all, local...)
		mu.Unlock()
	})
	elapsed := time.Since(begin)
	b.StopTimer()
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[min(len(all)-1, len(all)*99/100)].Microseconds()), "p99-µs")
}
