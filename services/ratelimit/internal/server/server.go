// Package server adapts the limiter and the anomaly detector to the generated
// Connect handler of bulwark.ratelimit.v1.RateLimitService, and maps their
// sentinel errors to Connect codes.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/anomaly"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/limiter"
)

// LimitExceededSubject is where denials are announced.
const LimitExceededSubject = "bulwark.ratelimit.v1.limit_exceeded"

// Publisher announces events; it must not block (see events.Queue).
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
}

// Alerts lists stored anomaly alerts.
type Alerts interface {
	List(ctx context.Context, q anomaly.ListQuery) ([]*ratelimitv1.AnomalyEvent, string, error)
}

// Params configures the handler.
type Params struct {
	Limiter *limiter.Limiter
	// Alerts serves ListAlerts; nil answers Unimplemented.
	Alerts Alerts
	// Denials receives a LimitExceededEvent per denial; nil publishes nothing.
	Denials Publisher
	Logger  *slog.Logger
}

// Server implements ratelimitv1connect.RateLimitServiceHandler.
type Server struct {
	p Params
}

var _ ratelimitv1connect.RateLimitServiceHandler = (*Server)(nil)

// New returns the handler implementation.
func New(p Params) (*Server, error) {
	if p.Limiter == nil {
		return nil, errors.New("server: Limiter is required")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{p: p}, nil
}

// toErr maps domain errors to Connect errors. Messages are the sentinel's own
// text: never subject values or amounts.
func (s *Server) toErr(ctx context.Context, err error) *connect.Error {
	switch {
	case errors.Is(err, limiter.ErrInvalidRequest):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, limiter.ErrInvalidReservation), errors.Is(err, anomaly.ErrInvalidPageToken):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, limiter.ErrStoreUnavailable):
		return connect.NewError(connect.CodeUnavailable, limiter.ErrStoreUnavailable)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded)
	}
	s.p.Logger.ErrorContext(ctx, "rate limit request failed", "error", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

func dims(in []ratelimitv1.Dimension) []limiter.Dimension {
	out := make([]limiter.Dimension, len(in))
	for i, d := range in {
		out[i] = limiter.Dimension(d)
	}
	return out
}

func limits(in []*ratelimitv1.LimitSpec) []limiter.Limit {
	out := make([]limiter.Limit, len(in))
	for i, l := range in {
		out[i] = limiter.Limit{
			Name: l.GetName(), Kind: limiter.Kind(l.GetKind()), Dimensions: dims(l.GetDimensions()),
			Limit: l.GetLimit(), Period: l.GetPeriod().AsDuration(), Burst: l.GetBurst(), Calendar: l.GetCalendarPeriod(),
		}
	}
	return out
}

func subject(s *ratelimitv1.Subject) limiter.Subject {
	return limiter.Subject{
		APIKeyID: s.GetApiKeyId(), PrincipalID: s.GetPrincipalId(), TeamID: s.GetTeamId(),
		Model: s.GetModel(), Provider: s.GetProvider(), Environment: s.GetEnvironment(),
	}
}

func statuses(in []limiter.Status) []*ratelimitv1.LimitStatus {
	out := make([]*ratelimitv1.LimitStatus, len(in))
	for i, s := range in {
		out[i] = &ratelimitv1.LimitStatus{
			Name: s.Name, Kind: ratelimitv1.LimitKind(s.Kind), Limit: s.Limit, Remaining: s.Remaining,
			ResetAfter: durationpb.New(s.ResetAfter), RetryAfter: durationpb.New(s.RetryAfter),
		}
	}
	return out
}

// Reserve implements RateLimitService.Reserve.
func (s *Server) Reserve(ctx context.Context, req *connect.Request[ratelimitv1.ReserveRequest]) (*connect.Response[ratelimitv1.ReserveResponse], error) {
	resp, err := s.reserve(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// MaxBatch is the most requests one ReserveBatch may carry.
const MaxBatch = 256

// ReserveBatch implements RateLimitService.ReserveBatch: each request is
// decided as Reserve would, concurrently, so that their scripts share round
// trips to Redis too.
func (s *Server) ReserveBatch(ctx context.Context, req *connect.Request[ratelimitv1.ReserveBatchRequest]) (*connect.Response[ratelimitv1.ReserveBatchResponse], error) {
	reqs := req.Msg.GetRequests()
	if len(reqs) > MaxBatch {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("a batch holds at most %d requests, not %d", MaxBatch, len(reqs)))
	}
	results := make([]*ratelimitv1.ReserveResult, len(reqs))
	var wg sync.WaitGroup
	for i, m := range reqs {
		wg.Go(func() {
			resp, err := s.reserve(ctx, m)
			if err != nil {
				results[i] = &ratelimitv1.ReserveResult{Result: &ratelimitv1.ReserveResult_Error{Error: &ratelimitv1.ReserveError{
					Code: uint32(err.Code()), Message: err.Message()}}}
				return
			}
			results[i] = &ratelimitv1.ReserveResult{Result: &ratelimitv1.ReserveResult_Response{Response: resp}}
		})
	}
	wg.Wait()
	return connect.NewResponse(&ratelimitv1.ReserveBatchResponse{Results: results}), nil
}

// reserve decides one request.
func (s *Server) reserve(ctx context.Context, m *ratelimitv1.ReserveRequest) (*ratelimitv1.ReserveResponse, *connect.Error) {
	d, err := s.p.Limiter.Reserve(ctx, limiter.ReserveRequest{
		RequestID: m.GetRequestId(), Subject: subject(m.GetSubject()), Limits: limits(m.GetLimits()),
		InputTokens: m.GetEstimatedInputTokens(), MaxOutputTokens: m.GetMaxOutputTokens(),
		CostMicros: m.GetEstimatedCostMicros(), FailOpen: m.GetFailOpen(), TTL: m.GetTtl().AsDuration(),
	})
	if err != nil {
		return nil, s.toErr(ctx, err)
	}
	resp := &ratelimitv1.ReserveResponse{
		Allowed: d.Allowed, ReservationId: d.ReservationID, DeniedBy: d.DeniedBy, Statuses: statuses(d.Statuses),
		RetryAfter: durationpb.New(d.RetryAfter), Degraded: d.Degraded,
		ReservedTokens: d.ReservedTokens, ReservedCostMicros: d.ReservedCostMicros,
	}
	if !d.Allowed && s.p.Denials != nil {
		s.announceDenial(ctx, m, resp, d)
	}
	return resp, nil
}

func (s *Server) announceDenial(ctx context.Context, m *ratelimitv1.ReserveRequest, resp *ratelimitv1.ReserveResponse, d limiter.Decision) {
	at := d.Now // the clock the decision was made on (Redis's, unless one is injected)
	if at.IsZero() {
		at = time.Now()
	}
	ev := &ratelimitv1.LimitExceededEvent{
		EventId: ulid.Make().String(), Time: timestamppb.New(at), RequestId: m.GetRequestId(),
		Subject: m.GetSubject(), Degraded: d.Degraded,
	}
	for _, st := range resp.GetStatuses() {
		if st.GetName() == d.DeniedBy {
			ev.Limit = st
			break
		}
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return
	}
	_ = s.p.Denials.Publish(ctx, LimitExceededSubject, ev.GetEventId(), data)
}

// Settle implements RateLimitService.Settle.
func (s *Server) Settle(ctx context.Context, req *connect.Request[ratelimitv1.SettleRequest]) (*connect.Response[ratelimitv1.SettleResponse], error) {
	m := req.Msg
	r, err := s.p.Limiter.Settle(ctx, m.GetReservationId(), limiter.Usage{
		InputTokens: m.GetInputTokens(), OutputTokens: m.GetOutputTokens(), CostMicros: m.GetCostMicros(), ModelServed: m.GetModelServed(),
	})
	if err != nil {
		return nil, s.toErr(ctx, err)
	}
	return connect.NewResponse(&ratelimitv1.SettleResponse{Settled: r.Settled, CostMicros: r.CostMicros}), nil
}

// Release implements RateLimitService.Release.
func (s *Server) Release(ctx context.Context, req *connect.Request[ratelimitv1.ReleaseRequest]) (*connect.Response[ratelimitv1.ReleaseResponse], error) {
	ok, err := s.p.Limiter.Release(ctx, req.Msg.GetReservationId())
	if err != nil {
		return nil, s.toErr(ctx, err)
	}
	return connect.NewResponse(&ratelimitv1.ReleaseResponse{Released: ok}), nil
}

// GetUsage implements RateLimitService.GetUsage.
func (s *Server) GetUsage(ctx context.Context, req *connect.Request[ratelimitv1.GetUsageRequest]) (*connect.Response[ratelimitv1.GetUsageResponse], error) {
	st, err := s.p.Limiter.Usage(ctx, subject(req.Msg.GetSubject()), limits(req.Msg.GetLimits()))
	if err != nil {
		return nil, s.toErr(ctx, err)
	}
	return connect.NewResponse(&ratelimitv1.GetUsageResponse{Statuses: statuses(st)}), nil
}

// ListAlerts implements RateLimitService.ListAlerts.
func (s *Server) ListAlerts(ctx context.Context, req *connect.Request[ratelimitv1.ListAlertsRequest]) (*connect.Response[ratelimitv1.ListAlertsResponse], error) {
	if s.p.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("anomaly detection is not enabled"))
	}
	m := req.Msg
	if m.GetPageSize() < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("page_size must not be negative"))
	}
	q := anomaly.ListQuery{PrincipalID: m.GetPrincipalId(), PageSize: int(m.GetPageSize()), PageToken: m.GetPageToken()}
	if m.GetSince() != nil {
		q.Since = m.GetSince().AsTime()
	}
	alerts, next, err := s.p.Alerts.List(ctx, q)
	if err != nil {
		return nil, s.toErr(ctx, err)
	}
	return connect.NewResponse(&ratelimitv1.ListAlertsResponse{Alerts: alerts, NextPageToken: next}), nil
}
