package limiter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// TestReserve_ExactOnARedisClusterWithTwoReplicas runs the limiter on a real
// three-primary Redis Cluster: every key of a decision carries its team's hash
// tag, so each script runs whole on the node owning that slot, and teams spread
// over the nodes. Two replicas with their own cluster clients race 40
// reservations per team against four limits of every kind, each with room for
// ten; exactly ten per team are granted, and settling works across the cluster.
func TestReserve_ExactOnARedisClusterWithTwoReplicas(t *testing.T) {
	c, prefix := platformtest.RedisCluster(t)
	other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Options().Addrs})
	t.Cleanup(func() { _ = other.Close() })
	var replicas [2]*Limiter
	for i, rdb := range []redis.Scripter{c, other} {
		l, err := New(context.Background(), Params{Redis: rdb, Prefix: prefix, StoreTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = l
	}
	limits := []Limit{
		{Name: "rpm", Kind: KindRequests, Dimensions: []Dimension{DimTeam}, Limit: 10, Burst: 9, Period: time.Hour},
		{Name: "tpm", Kind: KindTokens, Dimensions: []Dimension{DimTeam}, Limit: 1000, Period: time.Hour},
		{Name: "spend", Kind: KindSpend, Dimensions: []Dimension{DimTeam}, Limit: 100_000, Calendar: CalendarDay},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimTeam}, Limit: 10},
	}
	const teams, tries = 12, 40
	team := func(i int) Subject {
		return Subject{APIKeyID: "k", PrincipalID: "p", TeamID: fmt.Sprint("team-", i), Model: "gpt-4o", Environment: "prod"}
	}
	var granted [teams]atomic.Int64
	var firstID [teams]atomic.Value
	var wg sync.WaitGroup
	errs := make(chan error, teams*tries)
	for i := range teams * tries {
		wg.Go(func() {
			d, err := replicas[i%2].Reserve(context.Background(), ReserveRequest{RequestID: fmt.Sprint("r", i), Subject: team(i % teams),
				Limits: limits, InputTokens: 60, MaxOutputTokens: 40, CostMicros: 10_000})
			switch {
			case err != nil:
				errs <- err
			case d.Allowed:
				granted[i%teams].Add(1)
				firstID[i%teams].CompareAndSwap(nil, d.ReservationID)
			case d.DeniedBy == "":
				errs <- fmt.Errorf("a denial that names no limit: %+v", d)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range teams {
		if got := granted[i].Load(); got != 10 {
			t.Fatalf("team %d: granted %d of %d; want exactly 10", i, got, tries)
		}
	}
	ctx := context.Background()
	var holding atomic.Int32
	_ = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if keys, _ := node.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			holding.Add(1)
		}
		return nil
	})
	if holding.Load() < 2 {
		t.Fatalf("the teams' keys are on %d primary; they should spread over the cluster", holding.Load())
	}
	for i := range teams {
		id := firstID[i].Load().(string)
		if r, err := replicas[(i+1)%2].Settle(ctx, id, Usage{InputTokens: 10, OutputTokens: 10}); err != nil || !r.Settled {
			t.Fatalf("team %d: settle on the cluster: %v %+v", i, err, r)
		}
		st, err := replicas[i%2].Usage(ctx, team(i), limits)
		if err != nil {
			t.Fatal(err)
		}
		// Settling gave back 80 of the 100 tokens held and the concurrency slot.
		if st[1].Remaining != 80 || st[3].Remaining != 1 {
			t.Fatalf("team %d after a settle: tokens %d (want 80), slots %d (want 1)", i, st[1].Remaining, st[3].Remaining)
		}
	}
}
