// Package load is an open-loop, fixed-rate load generator: requests are
// started on a fixed timetable whatever the responses do, and each latency is
// measured from the moment the timetable said the request should start. A slow
// system under test therefore shows up as queueing in the latencies instead of
// silently lowering the offered rate (coordinated omission is avoided).
package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one request reports.
type Result struct {
	// FirstToken is when the first token of a streamed answer arrived (zero when
	// not streamed or none arrived).
	FirstToken time.Time
	// Err is nil on success; Class names the failure for the error table.
	Err   error
	Class string
}

// Op performs one request. It must honour ctx.
type Op func(ctx context.Context) Result

// Plan is a fixed-rate timetable.
type Plan struct {
	// Rate in requests per second (> 0).
	Rate float64
	// Duration of the timetable; Rate×Duration requests are scheduled.
	Duration time.Duration
	// Timeout bounds each request; 0 means 10 s.
	Timeout time.Duration
	// MaxInFlight bounds concurrent requests; a request due while the bound is
	// reached is not sent and counts as dropped (an error). 0 means 10000.
	MaxInFlight int
}

// Count is the number of requests the plan schedules.
func (p Plan) Count() int {
	n := int(p.Rate*p.Duration.Seconds() + 0.5)
	if n < 1 {
		n = 1
	}
	return n
}

// Interval is the gap between two scheduled starts.
func (p Plan) Interval() time.Duration {
	return time.Duration(float64(time.Second) / p.Rate)
}

// Outcome is what one run measured. Latencies are in microseconds.
type Outcome struct {
	Scheduled int
	Sent      int64
	OK        int64
	Errors    int64
	// Dropped requests were due while MaxInFlight requests were pending.
	Dropped    int64
	ErrorKinds map[string]int64
	// Latency from scheduled start to the end of the response, successes only.
	Latency *hdrhistogram.Histogram
	// TTFT from scheduled start to the first token, streamed successes only.
	TTFT *hdrhistogram.Histogram
	// Lag is how late the generator started each request against its timetable.
	Lag     *hdrhistogram.Histogram
	Elapsed time.Duration
}

// Histogram range: 1 µs to 60 s at 3 significant digits.
const (
	minUS   = 1
	maxUS   = 60_000_000
	sigFigs = 3
)

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(minUS, maxUS, sigFigs) }

func newOutcome() *Outcome {
	return &Outcome{ErrorKinds: map[string]int64{}, Latency: NewHistogram(), TTFT: NewHistogram(), Lag: NewHistogram()}
}

func us(d time.Duration) int64 {
	v := d.Microseconds()
	if v < minUS {
		v = minUS
	}
	if v > maxUS {
		v = maxUS
	}
	return v
}

// Merge adds o2's counts and histograms into o.
func (o *Outcome) Merge(o2 *Outcome) {
	o.Scheduled += o2.Scheduled
	o.Sent += o2.Sent
	o.OK += o2.OK
	o.Errors += o2.Errors
	o.Dropped += o2.Dropped
	for k, v := range o2.ErrorKinds {
		o.ErrorKinds[k] += v
	}
	o.Latency.Merge(o2.Latency)
	o.TTFT.Merge(o2.TTFT)
	o.Lag.Merge(o2.Lag)
	o.Elapsed += o2.Elapsed
}

// Empty returns an outcome with nothing recorded, to Merge runs into.
func Empty() *Outcome { return newOutcome() }

// Run executes the plan against op and returns when every request has ended
// (each is bounded by Plan.Timeout) or ctx is done. It never waits on a
// response before starting the next request.
func Run(ctx context.Context, p Plan, op Op) *Outcome {
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	if p.MaxInFlight <= 0 {
		p.MaxInFlight = 10000
	}
	n, interval := p.Count(), p.Interval()
	out := newOutcome()
	out.Scheduled = n

	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inFlight atomic.Int64
	)
	record := func(due time.Time, r Result, end time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if r.Err != nil {
			out.Errors++
			class := r.Class
			if class == "" {
				class = "error"
			}
			out.ErrorKinds[class]++
			return
		}
		out.OK++
		_ = out.Latency.RecordValue(us(end.Sub(due)))
		if !r.FirstToken.IsZero() {
			_ = out.TTFT.RecordValue(us(r.FirstToken.Sub(due)))
		}
	}

	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				goto drain
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			goto drain
		}
		mu.Lock()
		_ = out.Lag.RecordValue(us(time.Since(due)))
		mu.Unlock()
		if inFlight.Load() >= int64(p.MaxInFlight) {
			mu.Lock()
			out.Dropped++
			out.Errors++
			out.ErrorKinds["dropped: generator in-flight bound"]++
			mu.Unlock()
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		out.Sent++
		go func(due time.Time) {
			defer wg.Done()
			defer inFlight.Add(-1)
			rctx, cancel := context.WithTimeout(ctx, p.Timeout)
			r := op(rctx)
			end := time.Now()
			cancel()
			record(due, r, end)
		}(due)
	}
drain:
	wg.Wait()
	out.Elapsed = time.Since(start)
	return out
}
