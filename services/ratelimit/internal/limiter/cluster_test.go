package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
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
	for i, rdb := range []Store{c, other} {
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

// TestReserve_FollowsASentinelFailover runs the limiter through Sentinel: the
// primary dies, Sentinel promotes its replica, and the limiter carries on
// against the new primary with the reservations that were replicated, still
// exact. While no primary answers, decisions wait or fail closed.
func TestReserve_FollowsASentinelFailover(t *testing.T) {
	primary := platformtest.StartRedisServer(t)
	host, port, _ := strings.Cut(primary.Addr, ":")
	replica := platformtest.StartRedisServer(t, "--replicaof", host, port)
	sentinel := platformtest.StartRedisSentinel(t)
	ctx := context.Background()
	sc := redis.NewClient(&redis.Options{Addr: sentinel.Addr})
	t.Cleanup(func() { _ = sc.Close() })
	for _, cmd := range [][]any{
		{"SENTINEL", "MONITOR", "bulwark", host, port, 1},
		{"SENTINEL", "SET", "bulwark", "down-after-milliseconds", 300},
		{"SENTINEL", "SET", "bulwark", "failover-timeout", 3000},
	} {
		if err := sc.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	platformtest.WaitFor(t, 30*time.Second, "the replica in sync and known to Sentinel", func(ctx context.Context) error {
		info, _ := rc.Info(ctx, "replication").Result()
		reps, _ := sc.Do(ctx, "SENTINEL", "REPLICAS", "bulwark").Slice()
		if !strings.Contains(info, "master_link_status:up") || len(reps) != 1 {
			return fmt.Errorf("replica link up: %v, replicas Sentinel knows: %d", strings.Contains(info, "master_link_status:up"), len(reps))
		}
		return nil
	})

	u, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: sentinel.Addr, MasterName: "bulwark",
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	l, err := New(ctx, Params{Redis: u, StoreTimeout: 2 * time.Second, ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	limits := []Limit{{Name: "inflight", Kind: KindConcurrency, Limit: 5}}
	for i := range 3 {
		if d, err := l.Reserve(ctx, ReserveRequest{RequestID: fmt.Sprint("before-", i), Subject: subject(), Limits: limits}); err != nil || !d.Allowed {
			t.Fatalf("before the failover: %v %+v", err, d)
		}
	}
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr})
	if n, err := pc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("replication: %d replicas acknowledged (%v)", n, err)
	}
	_ = pc.Close()

	_ = primary.Cmd.Process.Kill()
	_ = primary.Cmd.Wait()
	// Until Sentinel has promoted the replica a decision either waits for it
	// (within the store timeout) or fails closed; nothing else.
	var d Decision
	platformtest.WaitFor(t, 30*time.Second, "a decision from the promoted replica", func(context.Context) error {
		// The limiter's own store timeout bounds each try, not the poll's second.
		d, err = l.Reserve(ctx, ReserveRequest{RequestID: "after-0", Subject: subject(), Limits: limits})
		if err != nil && !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("during the failover: %v; want a decision or ErrStoreUnavailable", err)
		}
		return err
	})
	if !d.Allowed || d.Degraded || d.Statuses[0].Remaining != 1 {
		t.Fatalf("first decision after the failover: %+v; want allowed with 1 slot left (3 replicated + this one)", d)
	}
	if d, _ := l.Reserve(ctx, ReserveRequest{RequestID: "after-1", Subject: subject(), Limits: limits}); !d.Allowed {
		t.Fatalf("fifth slot: %+v", d)
	}
	if d, _ := l.Reserve(ctx, ReserveRequest{RequestID: "after-2", Subject: subject(), Limits: limits}); d.Allowed {
		t.Fatalf("a sixth slot was granted against a limit of 5: %+v", d)
	}
	if role, _ := rc.Do(ctx, "ROLE").Slice(); len(role) == 0 || role[0] != "master" {
		t.Fatalf("the replica was not promoted: %v", role)
	}
}
