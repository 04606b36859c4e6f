package limiter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newTestLimiter returns a limiter on the real Redis with a private key prefix.
func newTestLimiter(t testing.TB, now func() time.Time) (*Limiter, *redis.Client, string) {
	t.Helper()
	rdb, prefix := platformtest.Redis(t)
	l, err := New(context.Background(), Params{Redis: rdb, Prefix: prefix, Now: now, StoreTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return l, rdb, prefix
}

// countingHook records the round trips sent to Redis, each as the names of
// the commands it carried. With a gate, it holds the first script there; with
// beforePipeline, it runs that before each pipeline is sent.
type countingHook struct {
	gate           *platformtest.Gate
	beforePipeline func()

	mu    sync.Mutex
	trips [][]string
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.gate != nil && cmd.Name() == "evalsha" {
			h.gate.Hold()
		}
		h.record(cmd)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.beforePipeline != nil {
			h.beforePipeline()
		}
		h.record(cmds...)
		return next(ctx, cmds)
	}
}

func (h *countingHook) record(cmds ...redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.Name()
	}
	h.mu.Lock()
	h.trips = append(h.trips, names)
	h.mu.Unlock()
}

// take returns the round trips recorded since the last take.
func (h *countingHook) take() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trips
	h.trips = nil
	return t
}

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func subject() Subject {
	return Subject{APIKeyID: "key-1", PrincipalID: "p-1", TeamID: "team-1", Model: "gpt-4o", Provider: "openai", Environment: "prod"}
}
