package ratelimitclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// service answers Reserve with the request id as the reservation id, and
// ReserveBatch through batch (Unimplemented when batch is nil). The first
// Reserve waits at gate. (The real service is tested with this
// client in the ratelimit package; this one lets a test answer what the real
// one never would.)
type service struct {
	ratelimitv1connect.UnimplementedRateLimitServiceHandler
	batch    func(*ratelimitv1.ReserveBatchRequest) (*ratelimitv1.ReserveBatchResponse, error)
	gate     *platformtest.Gate
	reserves atomic.Int64
	batches  atomic.Int64
}

func (s *service) Reserve(_ context.Context, req *connect.Request[ratelimitv1.ReserveRequest]) (*connect.Response[ratelimitv1.ReserveResponse], error) {
	s.reserves.Add(1)
	s.gate.Hold()
	return connect.NewResponse(&ratelimitv1.ReserveResponse{Allowed: true, ReservationId: req.Msg.GetRequestId()}), nil
}

func (s *service) ReserveBatch(_ context.Context, req *connect.Request[ratelimitv1.ReserveBatchRequest]) (*connect.Response[ratelimitv1.ReserveBatchResponse], error) {
	if s.batch == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("no ReserveBatch here"))
	}
	s.batches.Add(1)
	res, err := s.batch(req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func allow(m *ratelimitv1.ReserveBatchRequest) (*ratelimitv1.ReserveBatchResponse, error) {
	out := &ratelimitv1.ReserveBatchResponse{}
	for _, r := range m.GetRequests() {
		out.Results = append(out.Results, &ratelimitv1.ReserveResult{Result: &ratelimitv1.ReserveResult_Response{
			Response: &ratelimitv1.ReserveResponse{Allowed: true, ReservationId: r.GetRequestId()}}})
	}
	return out, nil
}

type result struct {
	res *connect.Response[ratelimitv1.ReserveResponse]
	err error
}

// queueBehindFirst makes n Reserve calls with the given contexts: the first
// holds the only lane at the service, the others queue behind it. It returns
// their results once all have returned.
func queueBehindFirst(t *testing.T, s *service, ctxs []context.Context) (*Batching, []result) {
	t.Helper()
	s.gate = platformtest.NewGate()
	path, h := ratelimitv1connect.NewRateLimitServiceHandler(s)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	b := NewBatching(ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), platformtest.Serve(t, mux)), 1)
	out := make([]result, len(ctxs))
	s.gate.LineUp(t, len(ctxs), b.Queued, nil, func(i int) {
		out[i].res, out[i].err = b.Reserve(ctxs[i], connect.NewRequest(&ratelimitv1.ReserveRequest{RequestId: fmt.Sprint("r", i)}))
	})
	return b, out
}

func backgrounds(n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = context.Background()
	}
	return ctxs
}

func TestBatching_GivesEachCallerItsOwnResultOrError(t *testing.T) {
	s := &service{batch: func(m *ratelimitv1.ReserveBatchRequest) (*ratelimitv1.ReserveBatchResponse, error) {
		out, _ := allow(m)
		out.Results[1].Result = &ratelimitv1.ReserveResult_Error{Error: &ratelimitv1.ReserveError{Code: uint32(connect.CodeUnavailable), Message: "rate limit store unavailable"}}
		out.Results[2].Result = &ratelimitv1.ReserveResult_Error{Error: &ratelimitv1.ReserveError{Code: 99, Message: "from the future"}}
		return out, nil
	}}
	_, out := queueBehindFirst(t, s, backgrounds(5))
	for i, want := range []string{"r0", "r1", "", "", "r4"} {
		if want != "" && (out[i].err != nil || out[i].res.Msg.GetReservationId() != want) {
			t.Fatalf("call %d: %v %v; want reservation %s", i, out[i].err, out[i].res, want)
		}
	}
	if connect.CodeOf(out[2].err) != connect.CodeUnavailable {
		t.Fatalf("call 2: %v; want unavailable", out[2].err)
	}
	if connect.CodeOf(out[3].err) != connect.CodeUnknown {
		t.Fatalf("call 3 (a code this client does not know): %v; want unknown", out[3].err)
	}
	if s.reserves.Load() != 1 || s.batches.Load() != 1 {
		t.Fatalf("%d Reserve and %d ReserveBatch calls; want 1 and 1", s.reserves.Load(), s.batches.Load())
	}
}

func TestBatching_GoesBackToReserveAgainstAServiceWithoutReserveBatch(t *testing.T) {
	s := &service{} // an older service: ReserveBatch is unimplemented
	b, out := queueBehindFirst(t, s, backgrounds(4))
	for i, r := range out {
		if r.err != nil || r.res.Msg.GetReservationId() != fmt.Sprint("r", i) {
			t.Fatalf("call %d: %v %v", i, r.err, r.res)
		}
	}
	if s.reserves.Load() != 4 {
		t.Fatalf("%d Reserve calls; want 4 (the three batched ones sent again one by one)", s.reserves.Load())
	}
	if !b.unbatched.Load() {
		t.Fatal("still batching against a service without ReserveBatch")
	}
}

func TestBatching_AWrongNumberOfResultsFailsTheBatch(t *testing.T) {
	s := &service{batch: func(m *ratelimitv1.ReserveBatchRequest) (*ratelimitv1.ReserveBatchResponse, error) {
		out, _ := allow(m)
		out.Results = out.Results[1:]
		return out, nil
	}}
	_, out := queueBehindFirst(t, s, backgrounds(4))
	if out[0].err != nil {
		t.Fatalf("call 0 (alone): %v", out[0].err)
	}
	for i, r := range out[1:] {
		if connect.CodeOf(r.err) != connect.CodeInternal {
			t.Fatalf("call %d: %v; want internal (results cannot be matched to callers)", i+1, r.err)
		}
	}
}

func TestBatching_ACallerThatGaveUpIsNotSent(t *testing.T) {
	var sent []string
	s := &service{batch: func(m *ratelimitv1.ReserveBatchRequest) (*ratelimitv1.ReserveBatchResponse, error) {
		for _, r := range m.GetRequests() {
			sent = append(sent, r.GetRequestId())
		}
		return allow(m)
	}}
	ctxs := backgrounds(4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ctxs[2] = ctx
	_, out := queueBehindFirst(t, s, ctxs)
	if connect.CodeOf(out[2].err) != connect.CodeCanceled {
		t.Fatalf("cancelled call: %v; want canceled", out[2].err)
	}
	if fmt.Sprint(sent) != "[r1 r3]" {
		t.Fatalf("batch carried %v; want [r1 r3]", sent)
	}
	for _, i := range []int{0, 1, 3} {
		if out[i].err != nil {
			t.Fatalf("call %d: %v", i, out[i].err)
		}
	}
}
