package limiter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// privateRedis starts a redis-server of this test's own on a free port, so the
// test can stop it (or flush its scripts) without touching the shared one.
func privateRedis(t *testing.T) (*redis.Client, *exec.Cmd) {
	t.Helper()
	srv := platformtest.StartRedisServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c, srv.Cmd
}

func closedPortClient(t *testing.T) *redis.Client {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestReserve_FailsClosedWhenRedisIsUnreachable(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := New(context.Background(), Params{Redis: closedPortClient(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	lim := Limit{Name: "c", Kind: KindConcurrency, Limit: 10}
	_, err = l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}})
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("err %v; want ErrStoreUnavailable", err)
	}
	if got := testutil.ToFloat64(l.m.failClosed); got != 1 {
		t.Fatalf("fail-closed counter %v; want 1", got)
	}
	if _, err := l.Settle(context.Background(), reservationID(remotePrefix, "t", "r"), Usage{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("settle err %v; want ErrStoreUnavailable", err)
	}
	if _, err := l.Usage(context.Background(), subject(), []Limit{lim}); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("usage err %v; want ErrStoreUnavailable", err)
	}
}

func TestReserve_FailsOpenWithTheLocalLimiterWhenAsked(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := newClock(t0)
	l, err := New(context.Background(), Params{Redis: closedPortClient(t), Registerer: reg, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	limits := []Limit{
		{Name: "rph", Kind: KindRequests, Dimensions: []Dimension{DimAPIKey}, Limit: 5, Burst: 4, Period: time.Hour},
		{Name: "tokens", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey}, Limit: 1000, Calendar: CalendarDay},
		{Name: "inflight", Kind: KindConcurrency, Dimensions: []Dimension{DimAPIKey}, Limit: 3},
	}
	var ids []string
	for i := range 5 {
		d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: fmt.Sprint(i), Subject: subject(), Limits: limits, InputTokens: 100, FailOpen: true})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Degraded {
			t.Fatal("a fail-open decision must say it is degraded")
		}
		if want := i < 3; d.Allowed != want {
			t.Fatalf("local reserve %d allowed=%v; want %v (concurrency 3)", i, d.Allowed, want)
		}
		if d.Allowed {
			ids = append(ids, d.ReservationID)
		} else if d.DeniedBy != "inflight" {
			t.Fatalf("denied by %q", d.DeniedBy)
		}
	}
	// Settling locally frees the slot and charges the actual tokens.
	r, err := l.Settle(context.Background(), ids[0], Usage{InputTokens: 10, OutputTokens: 20})
	if err != nil || !r.Settled {
		t.Fatal(err, r)
	}
	d, err := l.Reserve(context.Background(), ReserveRequest{RequestID: "after", Subject: subject(), Limits: limits, InputTokens: 100, FailOpen: true})
	if err != nil || !d.Allowed {
		t.Fatalf("after a local settle: %v %+v", err, d)
	}
	if tok := d.Statuses[1].Remaining; tok != 1000-30-100-100-100 {
		t.Fatalf("local token budget remaining %d", tok)
	}
	// Unsettled local reservations expire too.
	clk.Advance(DefaultTTL + 2*time.Second)
	d, _ = l.Reserve(context.Background(), ReserveRequest{RequestID: "later", Subject: subject(), Limits: limits, InputTokens: 1, FailOpen: true})
	if !d.Allowed || d.Statuses[2].Remaining != 2 {
		t.Fatalf("expired local reservations still hold slots: %+v", d)
	}
	if got := testutil.ToFloat64(l.m.failOpen); got != 7 {
		t.Fatalf("fail-open counter %v; want 7", got)
	}
	if got := testutil.ToFloat64(l.m.decisions.WithLabelValues("denied", "true")); got != 2 {
		t.Fatalf("degraded denials counted %v; want 2", got)
	}
}

func TestReserve_SwitchesToFailureModeWhenRedisStopsAndBackWhenItReturns(t *testing.T) {
	rdb, srv := privateRedis(t)
	l, err := New(context.Background(), Params{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	lim := []Limit{{Name: "c", Kind: KindConcurrency, Limit: 10}}
	d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: lim})
	if err != nil || !d.Allowed || d.Degraded {
		t.Fatalf("with redis up: %v %+v", err, d)
	}
	_ = srv.Process.Kill()
	_ = srv.Wait()
	if _, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: lim}); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("redis stopped, fail closed: %v", err)
	}
	d, err = l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: lim, FailOpen: true})
	if err != nil || !d.Allowed || !d.Degraded {
		t.Fatalf("redis stopped, fail open: %v %+v", err, d)
	}
	// Redis comes back on the same address: after the probe interval decisions are exact again.
	_, port, _ := net.SplitHostPort(rdb.Options().Addr)
	again := exec.Command(srv.Path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Process.Kill(); _ = again.Wait() })
	for i := 0; ; i++ {
		d, err = l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: lim, FailOpen: true})
		if err == nil && !d.Degraded {
			break
		}
		if i > 300 { // 15 s
			t.Fatalf("still degraded after redis returned: %v %+v", err, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReserve_RecoversWhenRedisForgetsTheScript(t *testing.T) {
	rdb, _ := privateRedis(t)
	l, err := New(context.Background(), Params{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil { // as after a restart or failover
		t.Fatal(err)
	}
	lim := []Limit{{Name: "c", Kind: KindConcurrency, Limit: 10}}
	d, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: lim})
	if err != nil || !d.Allowed {
		t.Fatalf("after SCRIPT FLUSH: %v %+v", err, d)
	}
	if r, err := l.Settle(context.Background(), d.ReservationID, Usage{}); err != nil || !r.Settled {
		t.Fatalf("settle after SCRIPT FLUSH: %v %+v", err, r)
	}
}

func TestNew_StartsEvenWhenRedisIsDown(t *testing.T) {
	if _, err := New(context.Background(), Params{Redis: closedPortClient(t)}); err != nil {
		t.Fatalf("New must not need Redis up (it fails per request instead): %v", err)
	}
}

// A Redis that stops answering (the process is paused, the connection stays
// open) must cost a decision the store timeout, not the client's read timeout
// and its retries: the gateway waits on this answer.
func TestReserve_GivesUpAfterTheStoreTimeoutWhenRedisHangs(t *testing.T) {
	srv := platformtest.StartRedisServer(t)
	rdb, err := platform.NewRedis(context.Background(), platform.RedisConfig{Addr: srv.Addr,
		DialTimeout: time.Second, ReadTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	l, err := New(context.Background(), Params{Redis: rdb, StoreTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lim := Limit{Name: "c", Kind: KindConcurrency, Limit: 10}
	if _, err := l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Cmd.Process.Signal(syscall.SIGCONT) })
	start := time.Now()
	_, err = l.Reserve(context.Background(), ReserveRequest{Subject: subject(), Limits: []Limit{lim}})
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("err %v; want ErrStoreUnavailable", err)
	}
	// The bound is generous on purpose (a loaded machine); what it rules out
	// is waiting for the 20 s read timeout.
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a hung Redis held the decision %v; the store timeout is 300ms", took)
	}
}
