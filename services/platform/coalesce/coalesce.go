// Package coalesce shares round trips among concurrent calls.
//
// A Batcher lets at most a fixed number of round trips ("lanes") be in flight.
// A call that finds a lane free goes at once, alone, so a lightly loaded
// caller pays nothing for batching. A call that finds every lane busy queues;
// the lane that finishes hands the queue to its first caller, which sends it
// as one round trip and wakes the others. Nobody waits on a timer: a batch is
// whatever queued during the previous round trip, so batches grow with the
// load and the added latency is at most one round trip.
package coalesce

import (
	"sync"
)

// Batcher runs items alone or together. T is usually a pointer to a struct
// holding one call's arguments and, once run, its result.
type Batcher[T any] struct {
	one   func(T)
	many  func([]T)
	lanes int
	max   int

	mu    sync.Mutex
	busy  int
	queue []*waiter[T]
	pool  sync.Pool
}

// waiter is a queued item. wake receives nil when the item has been run, or
// the batch that the item's caller is to run (the batch starts with the item).
type waiter[T any] struct {
	item T
	wake chan []*waiter[T]
}

// New returns a Batcher with the given number of lanes (at least 1) whose
// batches hold at most maxBatch items (at least 2). one runs an item alone;
// many runs two or more together and must fill in every item's result.
func New[T any](lanes, maxBatch int, one func(T), many func([]T)) *Batcher[T] {
	return &Batcher[T]{one: one, many: many, lanes: max(lanes, 1), max: max(maxBatch, 2)}
}

// Do runs item, alone or with concurrent items, and returns once it has run.
func (b *Batcher[T]) Do(item T) {
	b.mu.Lock()
	if b.busy < b.lanes {
		b.busy++
		b.mu.Unlock()
		defer b.next()
		b.one(item)
		return
	}
	w, _ := b.pool.Get().(*waiter[T])
	if w == nil {
		w = &waiter[T]{wake: make(chan []*waiter[T], 1)}
	}
	w.item = item
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	if batch := <-w.wake; batch != nil {
		b.run(batch)
	}
	var zero T
	w.item = zero
	b.pool.Put(w)
}

// run runs a batch handed to its first caller, then wakes the others and
// passes the lane on, even if many panics.
func (b *Batcher[T]) run(batch []*waiter[T]) {
	defer b.next()
	defer func() {
		for _, w := range batch[1:] {
			w.wake <- nil
		}
	}()
	if len(batch) == 1 {
		b.one(batch[0].item)
		return
	}
	items := make([]T, len(batch))
	for i, w := range batch {
		items[i] = w.item
	}
	b.many(items)
}

// next hands the lane to the queue's first caller with up to max queued
// items, or frees it.
func (b *Batcher[T]) next() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.busy--
		b.mu.Unlock()
		return
	}
	n := min(len(b.queue), b.max)
	batch := make([]*waiter[T], n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.mu.Unlock()
	batch[0].wake <- batch
}

// Queued is how many items wait for a lane.
func (b *Batcher[T]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
