// Package ratelimitclient helps Go callers of bulwark.ratelimit.v1.
package ratelimitclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform/coalesce"
)

// MaxBatch is the most Reserve calls one ReserveBatch carries (the service
// accepts up to 256).
const MaxBatch = 64

// Batching is a RateLimitServiceClient whose concurrent Reserve calls share
// ReserveBatch calls (see package coalesce): at most Lanes Reserve or
// ReserveBatch calls are in flight, and the Reserve calls made meanwhile go
// together in the next one. A caller alone goes at once, in a Reserve of its
// own; under load one HTTP round trip, one request to parse and one response
// to write carry many decisions, which is most of what a decision over the
// network costs. Each decision is still atomic on its own and independent of
// the others in its batch.
//
// A batch is one call: it carries the first caller's context (its trace, the
// client's interceptors) with the earliest deadline among the callers, and
// not the other callers' own request headers. A caller whose context ends
// while it waits for a lane is not sent. Against a service that does not know
// ReserveBatch (an older version during a rolling upgrade), Batching goes back
// to one Reserve per call for good.
//
// The other methods are the wrapped client's.
type Batching struct {
	ratelimitv1connect.RateLimitServiceClient
	b         *coalesce.Batcher[*reserveCall]
	unbatched atomic.Bool
}

type reserveCall struct {
	ctx context.Context
	req *connect.Request[ratelimitv1.ReserveRequest]
	res *connect.Response[ratelimitv1.ReserveResponse]
	err error
}

// NewBatching wraps c; lanes below 1 mean 1.
func NewBatching(c ratelimitv1connect.RateLimitServiceClient, lanes int) *Batching {
	b := &Batching{RateLimitServiceClient: c}
	b.b = coalesce.New(lanes, MaxBatch, b.one, b.many)
	return b
}

// Reserve implements RateLimitService.Reserve.
func (b *Batching) Reserve(ctx context.Context, req *connect.Request[ratelimitv1.ReserveRequest]) (*connect.Response[ratelimitv1.ReserveResponse], error) {
	if b.unbatched.Load() {
		return b.RateLimitServiceClient.Reserve(ctx, req)
	}
	c := &reserveCall{ctx: ctx, req: req}
	b.b.Do(c)
	return c.res, c.err
}

// Queued is how many Reserve calls wait for a lane.
func (b *Batching) Queued() int { return b.b.Queued() }

func (b *Batching) one(c *reserveCall) {
	c.res, c.err = b.RateLimitServiceClient.Reserve(c.ctx, c.req)
}

func (b *Batching) many(calls []*reserveCall) {
	live := make([]*reserveCall, 0, len(calls))
	var deadline time.Time
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			code := connect.CodeCanceled
			if errors.Is(err, context.DeadlineExceeded) {
				code = connect.CodeDeadlineExceeded
			}
			c.err = connect.NewError(code, err)
			continue
		}
		if d, ok := c.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		live = append(live, c)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		b.one(live[0])
		return
	}
	// The batch belongs to no one caller: one's cancellation must not fail
	// the others, and the earliest deadline bounds it.
	ctx := context.WithoutCancel(live[0].ctx)
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	msg := &ratelimitv1.ReserveBatchRequest{Requests: make([]*ratelimitv1.ReserveRequest, len(live))}
	for i, c := range live {
		msg.Requests[i] = c.req.Msg
	}
	res, err := b.RateLimitServiceClient.ReserveBatch(ctx, connect.NewRequest(msg))
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		b.unbatched.Store(true)
		var wg sync.WaitGroup
		for _, c := range live {
			wg.Go(func() { b.one(c) })
		}
		wg.Wait()
		return
	}
	if err == nil && len(res.Msg.GetResults()) != len(live) {
		err = connect.NewError(connect.CodeInternal, fmt.Errorf("ratelimit answered %d results for %d requests", len(res.Msg.GetResults()), len(live)))
	}
	if err != nil {
		for _, c := range live {
			c.err = err
		}
		return
	}
	for i, c := range live {
		switch r := res.Msg.GetResults()[i].GetResult().(type) {
		case *ratelimitv1.ReserveResult_Response:
			c.res = connect.NewResponse(r.Response)
		case *ratelimitv1.ReserveResult_Error:
			code := connect.Code(r.Error.GetCode())
			if code < connect.CodeCanceled || code > connect.CodeUnauthenticated {
				code = connect.CodeUnknown
			}
			c.err = connect.NewError(code, errors.New(r.Error.GetMessage()))
		default:
			c.err = connect.NewError(connect.CodeInternal, errors.New("ratelimit answered a result with neither a response nor an error"))
		}
	}
}
