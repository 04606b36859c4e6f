package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit/ratelimitclient"
)

func TestReserveBatch_DecidesEachRequestOnItsOwn(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	ctx := context.Background()
	for proto, c := range r.clients {
		t.Run(proto, func(t *testing.T) {
			sub := subject("batch-" + proto)
			req := func(id string, tokens int64) *ratelimitv1.ReserveRequest {
				return &ratelimitv1.ReserveRequest{RequestId: id, Subject: sub, Limits: limits(), EstimatedInputTokens: tokens}
			}
			// The requests run concurrently: b3 has a subject of its own, so
			// that only its size decides it.
			big := req("b3", 20_000)
			big.Subject = subject("batch-big-" + proto)
			// limits() allows 2 requests an hour with a burst of 1 and 10,000 tokens a day.
			res, err := c.ReserveBatch(ctx, connect.NewRequest(&ratelimitv1.ReserveBatchRequest{Requests: []*ratelimitv1.ReserveRequest{
				req("b1", 100),
				req("b2", -1), // invalid: fails alone
				big,           // more tokens than the limit: denied alone
				req("b4", 100),
				req("b5", 100), // the third request within the hour: denied by rpm
			}}))
			if err != nil {
				t.Fatal(err)
			}
			got := res.Msg.GetResults()
			if len(got) != 5 {
				t.Fatalf("%d results for 5 requests", len(got))
			}
			if e := got[1].GetError(); connect.Code(e.GetCode()) != connect.CodeInvalidArgument || e.GetMessage() == "" {
				t.Fatalf("b2 (negative tokens): %v; want an invalid_argument error", got[1])
			}
			if d := got[2].GetResponse(); d == nil || d.GetAllowed() || d.GetDeniedBy() != "tokens" {
				t.Fatalf("b3 (too many tokens): %v; want denied by tokens", got[2])
			}
			// b1 and b4 took the two requests the hour allows (in whatever order
			// they ran); b5 found none left.
			allowed := 0
			for _, i := range []int{0, 3, 4} {
				if got[i].GetResponse().GetAllowed() {
					allowed++
				} else if got[i].GetResponse().GetDeniedBy() != "rpm" {
					t.Fatalf("result %d: %v; want allowed or denied by rpm", i, got[i])
				}
			}
			if allowed != 2 {
				t.Fatalf("%d of b1, b4, b5 allowed; want 2 (the rpm limit)", allowed)
			}
			// Every allowed request holds a reservation of its own.
			for _, i := range []int{0, 3, 4} {
				if d := got[i].GetResponse(); d.GetAllowed() {
					if _, err := c.Release(ctx, connect.NewRequest(&ratelimitv1.ReleaseRequest{ReservationId: d.GetReservationId()})); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func TestReserveBatch_RejectsOversizedBatchesAndTakesNothing(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	c := r.clients["connect"]
	sub := subject("oversized")
	reqs := make([]*ratelimitv1.ReserveRequest, 257)
	for i := range reqs {
		reqs[i] = &ratelimitv1.ReserveRequest{RequestId: fmt.Sprint("o", i), Subject: sub, Limits: limits(), EstimatedInputTokens: 1}
	}
	_, err := c.ReserveBatch(context.Background(), connect.NewRequest(&ratelimitv1.ReserveBatchRequest{Requests: reqs}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("257 requests: %v; want invalid_argument", err)
	}
	u, err := c.GetUsage(context.Background(), connect.NewRequest(&ratelimitv1.GetUsageRequest{Subject: sub, Limits: limits()}))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range u.Msg.GetStatuses() {
		if st.GetName() == "inflight" && st.GetRemaining() != st.GetLimit() {
			t.Fatalf("a rejected batch took a slot: %v", st)
		}
	}
}

// counter counts the calls a client makes, by procedure, and holds the first
// one at its gate.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
	items int

	gate *platformtest.Gate
}

func (c *counter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		c.mu.Lock()
		c.calls[req.Spec().Procedure]++
		if b, ok := req.Any().(*ratelimitv1.ReserveBatchRequest); ok {
			c.items += len(b.GetRequests())
		}
		c.mu.Unlock()
		c.gate.Hold()
		return next(ctx, req)
	}
}

func (c *counter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (c *counter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func TestBatchingClient_SharesCallsAndGrantsExactlyTheLimit(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	cnt := &counter{calls: map[string]int{}, gate: platformtest.NewGate()}
	c := ratelimitclient.NewBatching(ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), r.url, connect.WithInterceptors(cnt)), 1)
	// 200 concurrent reservations against a concurrency limit of 60.
	lim := []*ratelimitv1.LimitSpec{{Name: "inflight", Kind: ratelimitv1.LimitKind_LIMIT_KIND_CONCURRENCY,
		Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY}, Limit: 60}}
	const calls = 200
	var granted, denied atomic.Int64
	var wg sync.WaitGroup
	reserve := func(i int) {
		defer wg.Done()
		res, err := c.Reserve(context.Background(), connect.NewRequest(&ratelimitv1.ReserveRequest{
			RequestId: fmt.Sprint("bc", i), Subject: subject("batching"), Limits: lim, EstimatedInputTokens: 1}))
		switch {
		case err != nil:
			t.Errorf("reserve %d: %v", i, err)
		case res.Msg.GetAllowed():
			granted.Add(1)
		case res.Msg.GetDeniedBy() == "inflight":
			denied.Add(1)
		default:
			t.Errorf("reserve %d: %v", i, res.Msg)
		}
	}
	// The first call holds the only lane; the others queue behind it.
	wg.Add(1)
	go reserve(0)
	<-cnt.gate.Entered()
	for i := 1; i < calls; i++ {
		wg.Add(1)
		go reserve(i)
	}
	platformtest.Until(t, 10*time.Second, "the other calls queued", func() bool { return c.Queued() == calls-1 })
	cnt.gate.Open()
	wg.Wait()
	if granted.Load() != 60 || denied.Load() != calls-60 {
		t.Fatalf("granted %d, denied %d; want exactly 60 and %d", granted.Load(), denied.Load(), calls-60)
	}
	// One Reserve (the first), then the 199 queued in batches of at most 64.
	reserveProc, batchProc := ratelimitv1connect.RateLimitServiceReserveProcedure, ratelimitv1connect.RateLimitServiceReserveBatchProcedure
	if cnt.calls[reserveProc] != 1 || cnt.calls[batchProc] != 4 || cnt.items != calls-1 {
		t.Fatalf("calls %v carrying %d batched requests; want 1 Reserve and 4 ReserveBatch carrying %d", cnt.calls, cnt.items, calls-1)
	}
}
