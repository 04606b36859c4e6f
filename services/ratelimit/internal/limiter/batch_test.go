package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// scriptTrips keeps the round trips that carried scripts (not the handshake
// of a new connection).
func scriptTrips(trips [][]string) [][]string {
	var out [][]string
	for _, names := range trips {
		if slices.Contains(names, "evalsha") || slices.Contains(names, "eval") {
			out = append(out, names)
		}
	}
	return out
}

type reserveResult struct {
	d   Decision
	err error
}

// reserveBehindGate lines the reservations up behind the first one, whose
// script is held at the hook's gate (the only lane busy), so that the others
// queue in call order (see platformtest.Gate.LineUp). It returns the results in
// call order.
func reserveBehindGate(t *testing.T, l *Limiter, h *countingHook, reqs []ReserveRequest, ctxs []context.Context, beforeRelease func()) []reserveResult {
	t.Helper()
	out := make([]reserveResult, len(reqs))
	h.gate.LineUp(t, len(reqs), l.batch.Queued, beforeRelease, func(i int) {
		out[i].d, out[i].err = l.Reserve(ctxs[i], reqs[i])
	})
	return out
}

// gatedLimiter is a limiter with one lane on rdb, whose first script waits at
// the hook's gate.
func gatedLimiter(t *testing.T, rdb *redis.Client, timeout time.Duration) (*Limiter, *countingHook, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := New(context.Background(), Params{Redis: rdb, Lanes: 1, StoreTimeout: timeout, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHook{gate: platformtest.NewGate()}
	rdb.AddHook(h)
	return l, h, reg
}

// roundTrips reads bulwark_ratelimit_scripts_per_round_trip: how many round
// trips, and how many scripts they carried.
func roundTrips(t *testing.T, reg *prometheus.Registry) (trips uint64, scripts float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "bulwark_ratelimit_scripts_per_round_trip" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("bulwark_ratelimit_scripts_per_round_trip is not registered")
	return 0, 0
}

func requests(n int, limits []Limit) ([]ReserveRequest, []context.Context) {
	reqs := make([]ReserveRequest, n)
	ctxs := make([]context.Context, n)
	for i := range reqs {
		reqs[i] = ReserveRequest{RequestID: fmt.Sprintf("r%d", i), Subject: subject(), Limits: limits, InputTokens: 10}
		ctxs[i] = context.Background()
	}
	return reqs, ctxs
}

func TestReserve_CallsQueuedBehindABusyLaneShareOneRoundTrip(t *testing.T) {
	rdb, _ := privateRedis(t)
	l, h, reg := gatedLimiter(t, rdb, 10*time.Second)
	// 12 calls against a limit of 7: the pipelined scripts still run one at a
	// time in Redis, so exactly 7 are granted.
	const calls, limit = 12, 7
	reqs, ctxs := requests(calls, []Limit{{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: limit}})
	res := reserveBehindGate(t, l, h, reqs, ctxs, nil)

	granted := 0
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if r.d.Allowed {
			granted++
		} else if r.d.DeniedBy != "inflight" {
			t.Fatalf("call %d denied by %q; want inflight", i, r.d.DeniedBy)
		}
	}
	if granted != limit {
		t.Fatalf("granted %d; want exactly %d", granted, limit)
	}
	// The gated call went alone; the 11 that queued behind it went together,
	// each as one EVALSHA of its own.
	trips := scriptTrips(h.take())
	want := make([]string, calls-1)
	for i := range want {
		want[i] = "evalsha"
	}
	if len(trips) != 2 || len(trips[0]) != 1 || trips[0][0] != "evalsha" || fmt.Sprint(trips[1]) != fmt.Sprint(want) {
		t.Fatalf("round trips %v; want [evalsha] then one pipeline of %d evalsha", trips, calls-1)
	}
	// Idle again: the next call takes a free lane and goes on its own.
	if d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: reqs[0].Limits}); err != nil || d.Allowed {
		t.Fatalf("after the batch: %v %+v; want a denial (the limit is full)", err, d)
	}
	if trips := scriptTrips(h.take()); len(trips) != 1 || len(trips[0]) != 1 {
		t.Fatalf("an idle limiter sent %v; want one evalsha", trips)
	}
	if trips, scripts := roundTrips(t, reg); trips != 3 || scripts != calls+1 {
		t.Fatalf("metric: %d round trips carrying %v scripts; want 3 carrying %d", trips, scripts, calls+1)
	}
}

func TestReserve_QueuedCallsSurviveRedisForgettingTheScript(t *testing.T) {
	rdb, _ := privateRedis(t)
	l, h, _ := gatedLimiter(t, rdb, 10*time.Second)
	reqs, ctxs := requests(5, []Limit{{Name: "tpm", Kind: KindTokens, Limit: 1000, Period: time.Minute}})
	// A failover or restart while calls wait: the pipeline meets NOSCRIPT. The
	// flush goes on a connection of its own.
	other := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	t.Cleanup(func() { _ = other.Close() })
	h.beforePipeline = func() {
		if err := other.ScriptFlush(context.Background()).Err(); err != nil {
			t.Error(err)
		}
	}
	for i, r := range reserveBehindGate(t, l, h, reqs, ctxs, nil) {
		if r.err != nil || !r.d.Allowed {
			t.Fatalf("call %d after SCRIPT FLUSH: %v %+v", i, r.err, r.d)
		}
	}
	// Each request was counted once, whichever way its script went.
	u, err := l.Usage(context.Background(), subject(), reqs[0].Limits)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].Remaining != 1000-5*10 {
		t.Fatalf("usage %+v; want the 5 calls' 10 tokens each counted once", u)
	}
}

func TestReserve_OneQueuedCallerGivingUpDoesNotFailTheOthers(t *testing.T) {
	rdb, _ := privateRedis(t)
	l, h, _ := gatedLimiter(t, rdb, 10*time.Second)
	reqs, ctxs := requests(4, []Limit{{Name: "inflight", Kind: KindConcurrency, Limit: 10}})
	ctx, cancel := context.WithCancel(context.Background())
	ctxs[1] = ctx                                         // the first queued call is the one that sends the batch
	res := reserveBehindGate(t, l, h, reqs, ctxs, cancel) // it gives up while queued
	if !errors.Is(res[1].err, context.Canceled) {
		t.Fatalf("cancelled call: %v; want context.Canceled", res[1].err)
	}
	for _, i := range []int{0, 2, 3} {
		if res[i].err != nil || !res[i].d.Allowed {
			t.Fatalf("call %d: %v %+v", i, res[i].err, res[i].d)
		}
	}
	// The cancelled call's script was never sent; it holds no slot.
	u, err := l.Usage(context.Background(), subject(), reqs[0].Limits)
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].Remaining != 10-3 {
		t.Fatalf("usage %+v; want the 3 calls that went through", u)
	}
	if l.down() != nil {
		t.Fatal("a caller's cancellation marked Redis down")
	}
}

func TestReserve_QueuedCallsPastTheirDeadlineFailWithoutBeingSent(t *testing.T) {
	rdb, _ := privateRedis(t)
	l, h, _ := gatedLimiter(t, rdb, 300*time.Millisecond)
	reqs, ctxs := requests(3, []Limit{{Name: "inflight", Kind: KindConcurrency, Limit: 10}})
	reqs[2].FailOpen = true
	// The gate opens only after the queued calls' deadlines have passed.
	res := reserveBehindGate(t, l, h, reqs, ctxs, func() { time.Sleep(400 * time.Millisecond) })
	// (The gated call was already on its way to Redis; how it ends is not
	// this test's business.)
	if !errors.Is(res[1].err, ErrStoreUnavailable) {
		t.Fatalf("queued call: %v; want ErrStoreUnavailable (fail closed)", res[1].err)
	}
	if res[2].err != nil || !res[2].d.Allowed || !res[2].d.Degraded {
		t.Fatalf("fail-open call: %v %+v; want a degraded grant from the local limiter", res[2].err, res[2].d)
	}
	trips := scriptTrips(h.take())
	if len(trips) != 1 {
		t.Fatalf("round trips %v; want only the gated one (the expired calls are not sent)", trips)
	}
}
