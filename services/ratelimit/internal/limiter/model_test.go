package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestReserve_MatchesAReferenceModelUnderRandomOperations drives one limiter
// with random reserves (of random lengths), settles, releases and clock jumps,
// and checks every decision and every reported remaining amount against a
// plain model of what the budget and the concurrency cap should be.
func TestReserve_MatchesAReferenceModelUnderRandomOperations(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			clk := newClock(t0)
			l, _, _ := newTestLimiter(t, clk.Now)
			const budget, slots = 10_000, 5
			limits := []Limit{
				{Name: "tokens", Kind: KindTokens, Dimensions: []Dimension{DimPrincipal}, Limit: budget, Calendar: CalendarDay},
				{Name: "slots", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: slots},
			}
			type res struct {
				amount int64
				exp    time.Time
			}
			used := int64(0)
			pending := map[string]res{}
			rng := rand.New(rand.NewPCG(seed, 99))
			expire := func() {
				for id, r := range pending {
					if !r.exp.After(clk.Now()) {
						delete(pending, id)
					}
				}
			}
			held := func() (sum int64) {
				for _, r := range pending {
					sum += r.amount
				}
				return sum
			}
			anyPending := func() string {
				for id := range pending {
					return id
				}
				return ""
			}
			ctx := context.Background()
			for step := range 300 {
				expire()
				switch op := rng.IntN(10); {
				case op < 5:
					a := rng.Int64N(3000)
					id := fmt.Sprint("q", step)
					// Reservations of different lengths: the earliest to expire
					// is not always the oldest.
					ttl := time.Duration(10+rng.IntN(80)) * time.Second
					d, err := l.Reserve(ctx, ReserveRequest{RequestID: id, Subject: subject(), Limits: limits, InputTokens: a, TTL: ttl})
					if err != nil {
						t.Fatal(err)
					}
					v := used + held()
					want := v+a <= budget && (a > 0 || v < budget) && len(pending) < slots
					if d.Allowed != want {
						t.Fatalf("step %d: reserve %d with %d used, %d held, %d slots: allowed=%v, model says %v", step, a, used, held(), len(pending), d.Allowed, want)
					}
					if d.Allowed {
						pending[d.ReservationID] = res{a, clk.Now().Add(ttl)}
					}
				case op < 7:
					id := anyPending()
					if id == "" {
						continue
					}
					actual := rng.Int64N(3000)
					r, err := l.Settle(ctx, id, Usage{InputTokens: actual, CostMicros: 1})
					if err != nil || !r.Settled {
						t.Fatalf("step %d: settle of a pending reservation: %v %+v", step, err, r)
					}
					delete(pending, id)
					used += actual
				case op < 8:
					id := anyPending()
					if id == "" {
						continue
					}
					if ok, err := l.Release(ctx, id); err != nil || !ok {
						t.Fatalf("step %d: release: %v %v", step, err, ok)
					}
					delete(pending, id)
				default:
					clk.Advance(time.Duration(rng.Int64N(40_000)) * time.Millisecond)
					continue
				}
				st, err := l.Usage(ctx, subject(), limits)
				if err != nil {
					t.Fatal(err)
				}
				expire()
				if want := max(budget-used-held(), 0); st[0].Remaining != want {
					t.Fatalf("step %d: tokens remaining %d, model says %d", step, st[0].Remaining, want)
				}
				if want := int64(slots - len(pending)); st[1].Remaining != want {
					t.Fatalf("step %d: slots remaining %d, model says %d", step, st[1].Remaining, want)
				}
			}
		})
	}
}
