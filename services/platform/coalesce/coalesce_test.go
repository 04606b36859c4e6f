package coalesce

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// call is a test item: its value, and what ran it.
type call struct {
	v     int
	batch int // size of the batch that ran it; 1 when it ran alone
}

// rig records every round trip and holds the first one at its gate.
type rig struct {
	b    *Batcher[*call]
	gate *platformtest.Gate

	mu    sync.Mutex
	trips [][]int
}

func newRig(lanes, max int) *rig {
	r := &rig{gate: platformtest.NewGate()}
	r.b = New(lanes, max, func(c *call) {
		r.gate.Hold()
		r.record(c)
	}, func(cs []*call) {
		r.gate.Hold()
		r.record(cs...)
	})
	return r
}

func (r *rig) record(cs ...*call) {
	vs := make([]int, len(cs))
	for i, c := range cs {
		vs[i] = c.v
		c.batch = len(cs)
	}
	r.mu.Lock()
	r.trips = append(r.trips, vs)
	r.mu.Unlock()
}

// start runs calls 0..n-1: the first is held in its round trip, the others
// queue behind it in order. It returns the calls once all have run.
func (r *rig) start(t *testing.T, n int) []*call {
	t.Helper()
	calls := make([]*call, n)
	for i := range calls {
		calls[i] = &call{v: i}
	}
	r.gate.LineUp(t, n, r.b.Queued, nil, func(i int) { r.b.Do(calls[i]) })
	return calls
}

func TestDo_CallsQueuedBehindABusyLaneGoTogetherInOrder(t *testing.T) {
	r := newRig(1, 64)
	calls := r.start(t, 6)
	if got := fmt.Sprint(r.trips); got != "[[0] [1 2 3 4 5]]" {
		t.Fatalf("round trips %s; want the first alone, then the five queued together", got)
	}
	for _, c := range calls[1:] {
		if c.batch != 5 {
			t.Fatalf("call %d ran in a batch of %d; want 5", c.v, c.batch)
		}
	}
}

func TestDo_BatchesStopAtMax(t *testing.T) {
	r := newRig(1, 3)
	r.start(t, 8)
	if got := fmt.Sprint(r.trips); got != "[[0] [1 2 3] [4 5 6] [7]]" {
		t.Fatalf("round trips %s; want batches of at most 3", got)
	}
}

func TestDo_GoesAloneWhileALaneIsFree(t *testing.T) {
	r := newRig(2, 64)
	r.gate.Open() // nothing held
	for i := range 5 {
		r.b.Do(&call{v: i})
	}
	if got := fmt.Sprint(r.trips); got != "[[0] [1] [2] [3] [4]]" {
		t.Fatalf("round trips %s; want each call alone", got)
	}
	if r.b.busy != 0 {
		t.Fatalf("%d lanes still busy", r.b.busy)
	}
}

func TestDo_EveryCallRunsExactlyOnceUnderContention(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	count := func(cs ...*call) {
		mu.Lock()
		for _, c := range cs {
			seen[c.v]++
		}
		mu.Unlock()
		time.Sleep(50 * time.Microsecond) // a round trip
	}
	b := New(2, 16, func(c *call) { count(c) }, func(cs []*call) { count(cs...) })
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				b.Do(&call{v: g*1000 + i})
			}
		}()
	}
	wg.Wait()
	if len(seen) != 32*200 {
		t.Fatalf("%d distinct calls ran; want %d", len(seen), 32*200)
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("call %d ran %d times", v, n)
		}
	}
	if b.busy != 0 || b.Queued() != 0 {
		t.Fatalf("busy %d, queued %d after every call returned", b.busy, b.Queued())
	}
}

func TestDo_APanickingBatchStillWakesTheOthersAndFreesTheLane(t *testing.T) {
	gate := platformtest.NewGate()
	b := New(1, 64, func(*call) { gate.Hold() }, func([]*call) { panic("batch failed") })
	panics := make(chan any, 3)
	gate.LineUp(t, 4, b.Queued, nil, func(i int) {
		defer func() {
			if p := recover(); p != nil {
				panics <- p
			}
		}()
		b.Do(&call{v: i})
	})
	if len(panics) != 1 {
		t.Fatalf("%d callers saw the panic; want only the one that ran the batch", len(panics))
	}
	if b.busy != 0 {
		t.Fatalf("%d lanes still busy after a panic", b.busy)
	}
	b.Do(&call{v: 9}) // the lane is usable again
}

// BenchmarkDo is the batcher's own cost per call with a 20 µs round trip.
func BenchmarkDo(b *testing.B) {
	trip := func() { time.Sleep(20 * time.Microsecond) }
	bt := New(2, 64, func(*call) { trip() }, func([]*call) { trip() })
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bt.Do(&call{})
		}
	})
}
