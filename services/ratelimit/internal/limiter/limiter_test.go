package limiter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// TestReserve_TwoReplicasGrantExactlyTheLimitUnderConcurrency runs several
// hundred concurrent reservations through two limiters (two replicas, each
// with its own Redis connection pool) against one limit, for each kind.
func TestReserve_TwoReplicasGrantExactlyTheLimitUnderConcurrency(t *testing.T) {
	cases := []struct {
		name  string
		limit Limit
		req   func(i int) ReserveRequest
	}{
		{
			name:  "requests",
			limit: Limit{Name: "rpm", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 100, Burst: 99, Period: time.Hour},
		},
		{
			name:  "tokens",
			limit: Limit{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 10_000, Period: time.Hour},
		},
		{
			name:  "spend",
			limit: Limit{Name: "daily-spend", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 1_000_000, Calendar: CalendarDay},
		},
		{
			name:  "concurrency",
			limit: Limit{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 100},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := platformtest.Redis(t)
			other := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
			t.Cleanup(func() { _ = other.Close() })
			clk := newClock(t0)
			var replicas [2]*Limiter
			for i, c := range []*redis.Client{rdb, other} {
				// A generous store timeout: this test is about exactness, and 400 calls
				// queue for connections on a loaded machine.
				l, err := New(context.Background(), Params{Redis: c, Prefix: prefix, Now: clk.Now, StoreTimeout: 30 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				replicas[i] = l
			}
			const n = 400
			var granted atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					d, err := replicas[i%2].Reserve(context.Background(), ReserveRequest{
						RequestID: fmt.Sprintf("req-%d", i), Subject: subject(), Limits: []Limit{tc.limit},
						// 100 tokens and 10,000 micro-dollars each: 100 fit every limit above.
						InputTokens: 60, MaxOutputTokens: 40, CostMicros: 10_000,
					})
					if err != nil {
						errs <- err
						return
					}
					if d.Allowed {
						granted.Add(1)
					} else if d.DeniedBy != tc.limit.Name || d.RetryAfter <= 0 {
						errs <- fmt.Errorf("denial names %q with retry %v", d.DeniedBy, d.RetryAfter)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := granted.Load(); got != 100 {
				t.Fatalf("granted %d of %d reservations against a limit of 100; want exactly 100", got, n)
			}
		})
	}
}

func TestReserve_IsOneRoundTripWithManyLimits(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	hook := &countingHook{}
	rdb.AddHook(hook)
	l, err := New(context.Background(), Params{Redis: rdb, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	limits := []Limit{
		{Name: "rpm", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 600, Burst: 50, Period: time.Minute},
		{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal, DimModel}, Limit: 100_000, Period: time.Minute},
		{Name: "team-day", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 50_000_000, Calendar: CalendarDay},
		{Name: "team-month", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 500_000_000, Calendar: CalendarMonth},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 100},
	}
	hook.take() // the script loads at New
	for i := range 20 {
		d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: fmt.Sprintf("r%d", i), Subject: subject(), Limits: limits, InputTokens: 100, MaxOutputTokens: 100})
		if err != nil || !d.Allowed {
			t.Fatalf("reserve %d: %v %+v", i, err, d)
		}
		if trips := hook.take(); fmt.Sprint(trips) != "[[evalsha]]" {
			t.Fatalf("reserve %d sent %v; want exactly one evalsha", i, trips)
		}
	}
	// Settle is one round trip too.
	d, _ := l.Reserve(context.Background(), ReserveRequest{RequestID: "s", Subject: subject(), Limits: limits, InputTokens: 1})
	hook.take()
	if _, err := l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 1}); err != nil {
		t.Fatal(err)
	}
	if trips := hook.take(); fmt.Sprint(trips) != "[[evalsha]]" {
		t.Fatalf("settle sent %v; want exactly one evalsha", trips)
	}
}

func TestReserve_DeniedRequestTakesNothingFromOtherLimits(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	roomy := Limit{Name: "roomy-tokens", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 1_000_000, Period: time.Hour}
	tight := Limit{Name: "tight-requests", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 2, Burst: 1, Period: time.Hour}
	slots := Limit{Name: "slots", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 50}
	limits := []Limit{roomy, slots, tight}
	for i := range 10 {
		d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: fmt.Sprint(i), Subject: subject(), Limits: limits, InputTokens: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; d.Allowed != want {
			t.Fatalf("reserve %d allowed=%v, want %v", i, d.Allowed, want)
		}
		if !d.Allowed && (d.DeniedBy != "tight-requests" || d.ReservationID != "") {
			t.Fatalf("denial %+v", d)
		}
	}
	st, err := l.Usage(context.Background(), subject(), []Limit{roomy, slots})
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Remaining != 1_000_000-2000 {
		t.Fatalf("tokens remaining %d; want only the two granted requests taken", st[0].Remaining)
	}
	if st[1].Remaining != 48 {
		t.Fatalf("slots remaining %d; want 48", st[1].Remaining)
	}
}

func TestReserve_GCRASpacesRequestsAndReportsRetryAfter(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	lim := Limit{Name: "rps", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 10, Period: time.Second, Burst: 2}
	reserve := func() Decision {
		d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i := range 3 { // one plus a burst of two
		if d := reserve(); !d.Allowed || d.Statuses[0].Remaining != int64(2-i) {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := reserve()
	if d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("4th request: allowed=%v retry=%v; want denied, retry 100ms", d.Allowed, d.RetryAfter)
	}
	clk.Advance(99 * time.Millisecond)
	if d := reserve(); d.Allowed {
		t.Fatal("allowed before the emission interval passed")
	}
	clk.Advance(time.Millisecond)
	if d := reserve(); !d.Allowed {
		t.Fatal("denied once the emission interval passed")
	}
	// No boundary burst: after a long pause only burst+1 go through at once.
	clk.Advance(time.Hour)
	n := 0
	for range 10 {
		if reserve().Allowed {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("after a pause %d went through at once; want 3", n)
	}
}

func TestReserve_UnsettledReservationsExpireAndFreeBudget(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	limits := []Limit{
		{Name: "tokens-day", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 1000, Calendar: CalendarDay},
		{Name: "tokens-rolling", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey}, Limit: 1000, Period: 30 * 24 * time.Hour},
		{Name: "spend-month", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 5000, Calendar: CalendarMonth},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 2},
	}
	req := func(id string) ReserveRequest {
		return ReserveRequest{RequestID: id, Subject: subject(), Limits: limits, InputTokens: 200, MaxOutputTokens: 300, CostMicros: 2500, TTL: time.Minute}
	}
	for _, id := range []string{"a", "b"} {
		if d, err := l.Reserve(context.Background(), req(id)); err != nil || !d.Allowed {
			t.Fatalf("reserve %s: %v %+v", id, err, d)
		}
	}
	// The gateway "crashes": a and b are never settled. Everything is held.
	d, err := l.Reserve(context.Background(), req("c"))
	if err != nil || d.Allowed {
		t.Fatalf("third reservation should not fit: %v %+v", err, d)
	}
	for _, st := range d.Statuses {
		if st.Remaining != 0 {
			t.Fatalf("%s remaining %d while reservations hold it; want 0", st.Name, st.Remaining)
		}
	}
	clk.Advance(time.Minute + time.Millisecond)
	d, err = l.Reserve(context.Background(), req("c"))
	if err != nil || !d.Allowed {
		t.Fatalf("after the reservations expired the budget should be free: %v %+v", err, d)
	}
	st, err := l.Usage(context.Background(), subject(), limits)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{500, 500, 2500, 1}
	for i, s := range st {
		// The rolling budget also drains a little over the minute; it must be at least as free.
		if s.Remaining < want[i] || (i != 1 && s.Remaining != want[i]) {
			t.Fatalf("%s remaining %d; want %d", s.Name, s.Remaining, want[i])
		}
	}
	// Settling an expired reservation is refused and charges nothing.
	if r, err := l.Settle(context.Background(), reservationID(remotePrefix, l.tag(subject()), "a"), Usage{InputTokens: 10}); err != nil || r.Settled {
		t.Fatalf("settle of an expired reservation: %v %+v", err, r)
	}
}

// A budget sweeps its reservation set for expired reservations as it decides.
// What a sweep gives back must stay given back even when the decision that made
// it is denied by another limit, and an earlier reservation that was settled
// must not hide a later one that expires unsettled.
func TestReserve_ExpiredReservationsAreGivenBackWhateverTheDecision(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	ctx := context.Background()
	budgets := []Limit{
		{Name: "tokens-day", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 100, Calendar: CalendarDay},
		{Name: "tokens-rolling", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey}, Limit: 100, Period: 30 * 24 * time.Hour},
	}
	reserve := func(id string, tokens int64, ttl time.Duration, extra ...Limit) Decision {
		t.Helper()
		d, err := l.Reserve(ctx, ReserveRequest{RequestID: id, Subject: subject(), Limits: append(slices.Clone(budgets), extra...), InputTokens: tokens, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// "short" is settled; "long" is never settled and expires later.
	short := reserve("short", 10, time.Minute)
	if _, err := l.Settle(ctx, short.ReservationID, Usage{InputTokens: 10}); err != nil {
		t.Fatal(err)
	}
	if d := reserve("long", 60, 3*time.Minute); !d.Allowed {
		t.Fatalf("long: %+v", d)
	}
	clk.Advance(2 * time.Minute) // past short's expiry, before long's
	if d := reserve("probe", 31, time.Minute); d.Allowed {
		t.Fatalf("long still holds 60 of the 90 left: %+v", d)
	}
	full := Limit{Name: "none", Kind: KindRequests, Limit: 1, Burst: 0, Period: time.Hour}
	if d := reserve("fill", 0, time.Minute, full); !d.Allowed {
		t.Fatalf("fill: %+v", d)
	}
	clk.Advance(2 * time.Minute) // past long's expiry
	// The requests limit has no room left and denies the first decision after
	// long expired; the budgets still look at their sets and give its 60 back.
	if d := reserve("denied", 1, time.Minute, full); d.Allowed || d.DeniedBy != "none" {
		t.Fatalf("denied: %+v", d)
	}
	if d := reserve("after", 90, time.Minute); !d.Allowed {
		t.Fatalf("long's 60 tokens were not given back: %+v", d)
	}
}

// State written before budgets kept the earliest reservation expiry (field e)
// and the set's marker member: the first decision after the upgrade must still
// give back what expired, and leave both keys with an expiry.
func TestReserve_TakesOverBudgetStateWrittenWithoutTheExpiryBound(t *testing.T) {
	clk := newClock(t0)
	l, rdb, _ := newTestLimiter(t, clk.Now)
	ctx := context.Background()
	lim := Limit{Name: "tokens-day", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 100, Calendar: CalendarDay}
	reserve := func(id string, tokens int64) Decision {
		t.Helper()
		d, err := l.Reserve(ctx, ReserveRequest{RequestID: id, Subject: subject(), Limits: []Limit{lim}, InputTokens: tokens, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := reserve("old", 70); !d.Allowed {
		t.Fatalf("old: %+v", d)
	}
	// Make the keys look as the earlier script left them.
	state, set := limitKeys(l.prefix, l.tag(subject()), subject(), lim)
	if err := rdb.HDel(ctx, state, "e").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZRem(ctx, set, "~").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Persist(ctx, set).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // "old" expired unsettled
	if d := reserve("new", 100); !d.Allowed {
		t.Fatalf("the expired 70 tokens were not given back: %+v", d)
	}
	for _, k := range []string{state, set} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Fatalf("%s has no expiry after the first decision (%v)", k, ttl)
		}
	}
	if e := rdb.HGet(ctx, state, "e").Val(); e == "" {
		t.Fatal("the state has no expiry bound after the first decision")
	}
}

func TestSettle_CorrectsToActualUsageAndFreesTheSlot(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	limits := []Limit{
		{Name: "tokens", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 10_000, Calendar: CalendarDay},
		{Name: "spend", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 1_000_000, Calendar: CalendarMonth},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 1},
	}
	// gpt-4o: $2.50 in / $10 out per million tokens.
	d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: "x", Subject: subject(), Limits: limits, InputTokens: 1000, MaxOutputTokens: 4000})
	if err != nil || !d.Allowed {
		t.Fatal(err, d)
	}
	if d.ReservedTokens != 5000 || d.ReservedCostMicros != 1000*2.5+4000*10 {
		t.Fatalf("reserved %d tokens, %d micros", d.ReservedTokens, d.ReservedCostMicros)
	}
	r, err := l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 1000, OutputTokens: 200})
	if err != nil || !r.Settled || r.CostMicros != 1000*2.5+200*10 {
		t.Fatalf("settle: %v %+v", err, r)
	}
	st, _ := l.Usage(context.Background(), subject(), limits)
	if st[0].Remaining != 10_000-1200 || st[1].Remaining != 1_000_000-4500 || st[2].Remaining != 1 {
		t.Fatalf("after settle: %+v", st)
	}
	if r, _ := l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 5}); r.Settled {
		t.Fatal("a second settle was accepted")
	}
	// Usage above the estimate is charged too, and model_served reprices it.
	d, _ = l.Reserve(context.Background(), ReserveRequest{RequestID: "y", Subject: subject(), Limits: limits, InputTokens: 100, MaxOutputTokens: 100})
	r, _ = l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 100, OutputTokens: 900, ModelServed: "gpt-4o-mini"})
	if !r.Settled || r.CostMicros != 100*0.15*1+ceilInt(900*0.6) {
		t.Fatalf("settle with model_served: %+v", r)
	}
	st, _ = l.Usage(context.Background(), subject(), limits)
	if st[0].Remaining != 10_000-1200-1000 {
		t.Fatalf("tokens after an over-estimate settle: %d", st[0].Remaining)
	}
}

func ceilInt(f float64) int64 { return int64(f + 0.999999) }

func TestRelease_GivesEverythingBack(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	limits := []Limit{
		{Name: "rph", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 1, Period: time.Hour},
		{Name: "tokens", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 500, Period: time.Hour},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 1},
	}
	req := ReserveRequest{RequestID: "one", Subject: subject(), Limits: limits, InputTokens: 500}
	d, err := l.Reserve(context.Background(), req)
	if err != nil || !d.Allowed {
		t.Fatal(err, d)
	}
	req.RequestID = "two"
	if d2, _ := l.Reserve(context.Background(), req); d2.Allowed {
		t.Fatal("second request fit while the first holds everything")
	}
	if ok, err := l.Release(context.Background(), d.ReservationID); err != nil || !ok {
		t.Fatal("release", err, ok)
	}
	if ok, _ := l.Release(context.Background(), d.ReservationID); ok {
		t.Fatal("released twice")
	}
	if d2, _ := l.Reserve(context.Background(), req); !d2.Allowed {
		t.Fatalf("after release the request should fit: %+v", d2)
	}
}

func TestReserve_IsIdempotentByRequestID(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	lim := Limit{Name: "tokens", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: 1000, Period: time.Hour}
	req := ReserveRequest{RequestID: "same", Subject: subject(), Limits: []Limit{lim}, InputTokens: 400}
	first, err := l.Reserve(context.Background(), req)
	if err != nil || !first.Allowed || first.Replayed {
		t.Fatal(err, first)
	}
	for range 3 {
		again, err := l.Reserve(context.Background(), req)
		if err != nil || !again.Allowed || !again.Replayed || again.ReservationID != first.ReservationID {
			t.Fatalf("retry: %v %+v", err, again)
		}
	}
	st, _ := l.Usage(context.Background(), subject(), []Limit{lim})
	if st[0].Remaining != 600 {
		t.Fatalf("remaining %d after retries; want 600 (taken once)", st[0].Remaining)
	}
}

func TestReserve_CalendarBudgetsResetAtUTCBoundaries(t *testing.T) {
	clk := newClock(time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC))
	l, _, _ := newTestLimiter(t, clk.Now)
	day := Limit{Name: "day", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 100, Calendar: CalendarDay}
	month := Limit{Name: "month", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 100, Calendar: CalendarMonth}
	for _, lim := range []Limit{day, month} {
		if d, _ := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}, CostMicros: 100}); !d.Allowed {
			t.Fatalf("%s: first spend denied", lim.Name)
		}
		d, _ := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}, CostMicros: 1})
		if d.Allowed || d.RetryAfter != time.Second {
			t.Fatalf("%s: spent budget gave %+v; want denied with retry 1s (to midnight)", lim.Name, d)
		}
	}
	clk.Advance(time.Second) // 2028-03-01 00:00:00: a new day and a new month
	for _, lim := range []Limit{day, month} {
		if d, _ := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}, CostMicros: 100}); !d.Allowed {
			t.Fatalf("%s: budget did not reset at the boundary", lim.Name)
		}
	}
}

// TestUsage_CalendarWindowsMatchGoTime checks the script's civil-date
// arithmetic against Go's calendar for random instants across centuries.
func TestUsage_CalendarWindowsMatchGoTime(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	limits := []Limit{
		{Name: "h", Kind: KindSpend, Limit: 1, Calendar: CalendarHour},
		{Name: "d", Kind: KindSpend, Limit: 1, Calendar: CalendarDay},
		{Name: "m", Kind: KindSpend, Limit: 1, Calendar: CalendarMonth},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		at := time.UnixMilli(rng.Int64N(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())).UTC()
		clk.Set(at)
		st, err := l.Usage(context.Background(), subject(), limits)
		if err != nil {
			t.Fatal(err)
		}
		for i, lim := range limits {
			_, end := localWindow(lim.Calendar, at.UnixMilli())
			if want := time.Duration(end-at.UnixMilli()) * time.Millisecond; st[i].ResetAfter != want {
				t.Fatalf("%s window at %s ends in %v; want %v", lim.Calendar, at, st[i].ResetAfter, want)
			}
		}
	}
}

func TestReserve_RollingBudgetRefillsContinuously(t *testing.T) {
	clk := newClock(t0)
	l, _, _ := newTestLimiter(t, clk.Now)
	lim := Limit{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey}, Limit: 6000, Period: time.Minute}
	reserve := func(tokens int64) Decision {
		d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}, InputTokens: tokens})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if !reserve(6000).Allowed {
		t.Fatal("a full budget was denied")
	}
	d := reserve(1000)
	if d.Allowed || d.RetryAfter != 10*time.Second {
		t.Fatalf("over budget: %+v; want denied, retry 10s (100 tokens/s)", d)
	}
	clk.Advance(10 * time.Second)
	if !reserve(1000).Allowed {
		t.Fatal("refilled budget denied")
	}
	if d := reserve(7000); d.Allowed || d.RetryAfter != time.Minute {
		t.Fatalf("a request above the whole limit: %+v; want denied with retry of one period", d)
	}
}

func TestReserve_RejectsInvalidLimits(t *testing.T) {
	l, _, _ := newTestLimiter(t, nil)
	bad := [][]Limit{
		{{Name: "", Kind: KindRequests, Limit: 1, Period: time.Second}},
		{{Name: "a", Kind: KindRequests, Limit: 0, Period: time.Second}},
		{{Name: "a", Kind: KindTokens, Limit: 5}},
		{{Name: "a", Kind: KindSpend, Limit: 5, Calendar: "week"}},
		{{Name: "a", Kind: 9, Limit: 5}},
		{{Name: "a", Kind: KindConcurrency, Limit: 5}, {Name: "a", Kind: KindConcurrency, Limit: 5}},
	}
	for i, limits := range bad {
		if _, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: limits}); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("case %d: err %v; want ErrInvalidRequest", i, err)
		}
	}
	if _, err := l.Settle(context.Background(), "forged", Usage{}); !errors.Is(err, ErrInvalidReservation) {
		t.Fatalf("forged id: %v", err)
	}
}

func TestReserve_UsesTheRedisClockWhenNoneIsInjected(t *testing.T) {
	l, _, _ := newTestLimiter(t, nil)
	d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{{Name: "c", Kind: KindConcurrency, Limit: 1}}})
	if err != nil || !d.Allowed {
		t.Fatal(err, d)
	}
	if skew := time.Since(d.Now); skew > 5*time.Second || skew < -5*time.Second {
		t.Fatalf("decision clock %v is far from now", d.Now)
	}
}

func TestReserve_EveryKeyItWritesExpires(t *testing.T) {
	clk := newClock(t0)
	l, rdb, prefix := newTestLimiter(t, clk.Now)
	limits := []Limit{
		{Name: "rpm", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 10, Burst: 9, Period: time.Minute},
		{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey}, Limit: 10_000, Period: time.Minute},
		{Name: "month", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 10_000, Calendar: CalendarMonth},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 10},
	}
	for i := range 3 {
		d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: fmt.Sprint(i), Subject: subject(), Limits: limits, InputTokens: 10, TTL: time.Minute})
		if err != nil || !d.Allowed {
			t.Fatal(err, d)
		}
		if i == 0 {
			if _, err := l.Settle(context.Background(), d.ReservationID, Usage{InputTokens: 50}); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) < 7 {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(context.Background(), k).Val(); ttl <= 0 {
			t.Fatalf("key %s has no expiry (%v): it would outlive its use", k, ttl)
		}
	}
}
