package platformtest

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Gate holds the first caller of Hold until Open, so that a test can line
// other calls up behind one it knows to be in flight (a round trip held at a
// client hook, an interceptor or a handler).
type Gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

// NewGate returns a closed gate.
func NewGate() *Gate {
	return &Gate{entered: make(chan struct{}), release: make(chan struct{})}
}

// Hold blocks its first caller until Open; later callers pass at once.
func (g *Gate) Hold() {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
}

// Entered is closed once the first caller is held.
func (g *Gate) Entered() <-chan struct{} { return g.entered }

// Open lets the held caller go, and every later one pass.
func (g *Gate) Open() { close(g.release) }

// LineUp runs call(0) on a goroutine of its own and waits until it is held at
// the gate; then runs call(1) … call(n-1) the same way, each once the one
// before it waits (queued reports how many wait), so that they queue in call
// order. Then it runs beforeOpen, if any, opens the gate and returns once
// every call has returned.
func (g *Gate) LineUp(t testing.TB, n int, queued func() int, beforeOpen func(), call func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { call(i) })
		if i == 0 {
			<-g.entered
			continue
		}
		Until(t, 10*time.Second, fmt.Sprintf("%d calls queued", i), func() bool { return queued() == i })
	}
	if beforeOpen != nil {
		beforeOpen()
	}
	g.Open()
	wg.Wait()
}
