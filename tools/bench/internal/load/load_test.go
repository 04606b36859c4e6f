package load

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// An open-loop generator starts every scheduled request whatever the
// responses do: here no response can complete until all of them have been
// sent, which a closed-loop generator (waiting for answers) could never do.
func TestRun_StartsEveryScheduledRequestBeforeAnyResponse(t *testing.T) {
	p := Plan{Rate: 200, Duration: 250 * time.Millisecond, Timeout: 30 * time.Second}
	n := p.Count()
	var started atomic.Int64
	allSent := make(chan struct{})
	op := func(ctx context.Context) Result {
		if started.Add(1) == int64(n) {
			close(allSent)
		}
		select {
		case <-allSent:
			return Result{}
		case <-ctx.Done():
			return Result{Err: ctx.Err(), Class: "timeout"}
		}
	}
	o := Run(context.Background(), p, op)
	if n != 50 || o.Scheduled != n {
		t.Fatalf("scheduled %d, plan count %d; want rate×duration = 50", o.Scheduled, n)
	}
	if o.Sent != int64(n) || o.OK != int64(n) || o.Errors != 0 {
		t.Fatalf("sent %d ok %d errors %d (%v); want all %d sent and answered", o.Sent, o.OK, o.Errors, o.ErrorKinds, n)
	}
	if o.Latency.TotalCount() != int64(n) {
		t.Fatalf("recorded %d latencies, want %d", o.Latency.TotalCount(), n)
	}
}

// A slow handler does not lower the offered rate: the number sent is rate×duration.
func TestRun_SlowHandlerStillReceivesRateTimesDuration(t *testing.T) {
	p := Plan{Rate: 400, Duration: 300 * time.Millisecond, Timeout: 30 * time.Second}
	var calls atomic.Int64
	o := Run(context.Background(), p, func(ctx context.Context) Result {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond) // each answer takes far longer than the 2.5 ms interval
		return Result{}
	})
	if want := int64(120); o.Sent != want || calls.Load() != want || o.OK != want {
		t.Fatalf("sent %d, handled %d, ok %d; want %d", o.Sent, calls.Load(), o.OK, want)
	}
}

// Requests due while MaxInFlight are pending are dropped and counted as errors.
func TestRun_DropsAndCountsRequestsBeyondTheInFlightBound(t *testing.T) {
	p := Plan{Rate: 1000, Duration: 20 * time.Millisecond, Timeout: 2 * time.Second, MaxInFlight: 5}
	o := Run(context.Background(), p, func(ctx context.Context) Result {
		<-ctx.Done() // never answers: every slot stays busy until the timeout
		return Result{Err: ctx.Err(), Class: "timeout"}
	})
	if o.Sent != 5 || o.Dropped != 15 || o.Errors != 20 || o.OK != 0 {
		t.Fatalf("sent %d dropped %d errors %d ok %d; want 5, 15, 20, 0", o.Sent, o.Dropped, o.Errors, o.OK)
	}
	if o.ErrorKinds["timeout"] != 5 {
		t.Fatalf("error kinds %v; want 5 timeouts", o.ErrorKinds)
	}
}

func TestRun_ErrorsAreCountedByClassAndNotRecordedAsLatency(t *testing.T) {
	var i atomic.Int64
	o := Run(context.Background(), Plan{Rate: 1000, Duration: 10 * time.Millisecond}, func(ctx context.Context) Result {
		if i.Add(1)%2 == 0 {
			return Result{Err: errors.New("status 503"), Class: "http 503"}
		}
		return Result{}
	})
	if o.OK != 5 || o.Errors != 5 || o.ErrorKinds["http 503"] != 5 || o.Latency.TotalCount() != 5 {
		t.Fatalf("ok %d errors %d kinds %v latencies %d", o.OK, o.Errors, o.ErrorKinds, o.Latency.TotalCount())
	}
}

func TestRun_StopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	o := Run(ctx, Plan{Rate: 100, Duration: time.Hour}, func(ctx context.Context) Result {
		if calls.Add(1) == 3 {
			cancel()
		}
		return Result{}
	})
	if o.Sent >= int64(o.Scheduled) || o.Sent < 3 {
		t.Fatalf("sent %d of %d scheduled; want the run cut short after 3", o.Sent, o.Scheduled)
	}
}

func TestPlan_CountIsRateTimesDuration(t *testing.T) {
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want int
	}{{1000, 20 * time.Second, 20000}, {1, 500 * time.Millisecond, 1}, {0.1, time.Second, 1}, {333, 3 * time.Second, 999}} {
		if got := (Plan{Rate: c.rate, Duration: c.d}).Count(); got != c.want {
			t.Errorf("rate %v for %v: %d requests, want %d", c.rate, c.d, got, c.want)
		}
	}
}
