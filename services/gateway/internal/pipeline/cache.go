package pipeline

import (
	"sync"
	"sync/atomic"
	"time"
)

// ttlCache is a bounded map with per-entry expiry and a generation counter:
// Invalidate bumps the generation, so an answer fetched before an invalidation
// is never stored after it.
type ttlCache[V any] struct {
	mu  sync.RWMutex
	m   map[string]ttlEntry[V]
	max int
	ttl time.Duration
	gen atomic.Uint64
	now func() time.Time
}

type ttlEntry[V any] struct {
	v   V
	exp time.Time
}

func newTTLCache[V any](max int, ttl time.Duration, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{m: make(map[string]ttlEntry[V]), max: max, ttl: ttl, now: now}
}

// get returns a live entry and the generation to pass to put.
func (c *ttlCache[V]) get(key string) (V, uint64, bool) {
	gen := c.gen.Load()
	var zero V
	if c.ttl <= 0 {
		return zero, gen, false
	}
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || c.now().After(e.exp) {
		return zero, gen, false
	}
	return e.v, gen, true
}

// put stores v unless the cache was invalidated since gen was read. exp, when
// not zero and earlier than the TTL, bounds the entry (e.g. a key's expiry).
func (c *ttlCache[V]) put(gen uint64, key string, v V, exp time.Time) {
	if c.ttl <= 0 {
		return
	}
	limit := c.now().Add(c.ttl)
	if exp.IsZero() || exp.After(limit) {
		exp = limit
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = ttlEntry[V]{v: v, exp: exp}
}

// invalidate drops everything.
func (c *ttlCache[V]) invalidate() {
	c.mu.Lock()
	c.gen.Add(1)
	clear(c.m)
	c.mu.Unlock()
}
