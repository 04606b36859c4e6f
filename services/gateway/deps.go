package gateway

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

// The dependencies, as the gateway needs them. Each is satisfied by the
// generated Connect client of the service (split mode) and, for unary RPCs, by
// the generated handler implementation itself (in-process mode), since both
// have the same method signatures.

// Authenticator resolves credentials (identityv1connect.IdentityServiceClient).
type Authenticator interface {
	Authenticate(context.Context, *connect.Request[identityv1.AuthenticateRequest]) (*connect.Response[identityv1.AuthenticateResponse], error)
}

// Authorizer makes policy decisions (identityv1connect.PolicyServiceClient).
type Authorizer interface {
	Authorize(context.Context, *connect.Request[identityv1.AuthorizeRequest]) (*connect.Response[identityv1.AuthorizeResponse], error)
}

// Reserver takes and gives back a request's share of its limits.
type Reserver interface {
	Reserve(context.Context, *connect.Request[ratelimitv1.ReserveRequest]) (*connect.Response[ratelimitv1.ReserveResponse], error)
	Release(context.Context, *connect.Request[ratelimitv1.ReleaseRequest]) (*connect.Response[ratelimitv1.ReleaseResponse], error)
}

// Settler corrects a reservation to actual usage.
type Settler interface {
	Settle(context.Context, *connect.Request[ratelimitv1.SettleRequest]) (*connect.Response[ratelimitv1.SettleResponse], error)
}

// Limiter is a Reserver and a Settler (ratelimitv1connect.RateLimitServiceClient).
type Limiter interface {
	Reserver
	Settler
}

// Redactor redacts request texts (redactionv1connect.RedactionServiceClient).
// Restoring never leaves the gateway: it uses the redaction engine in-process
// with the token map it keeps in memory.
type Redactor interface {
	Redact(context.Context, *connect.Request[redactionv1.RedactRequest]) (*connect.Response[redactionv1.RedactResponse], error)
}

// Router sends unary calls to providers (routerv1connect.RouterServiceClient).
type Router interface {
	Complete(context.Context, *connect.Request[routerv1.CompleteRequest]) (*connect.Response[routerv1.CompleteResponse], error)
	Embed(context.Context, *connect.Request[routerv1.EmbedRequest]) (*connect.Response[routerv1.EmbedResponse], error)
	ListModels(context.Context, *connect.Request[routerv1.ListModelsRequest]) (*connect.Response[routerv1.ListModelsResponse], error)
}

// RouterStream is a stream of provider events. *connect.ServerStreamForClient
// satisfies it; an in-process router can too.
type RouterStream interface {
	Receive() bool
	Msg() *routerv1.StreamCompleteResponse
	Err() error
	Close() error
}

// RouterStreamer opens streaming calls.
type RouterStreamer interface {
	StreamComplete(ctx context.Context, req *routerv1.StreamCompleteRequest) (RouterStream, error)
}

// RouterStreamerFunc adapts a function to RouterStreamer.
type RouterStreamerFunc func(ctx context.Context, req *routerv1.StreamCompleteRequest) (RouterStream, error)

// StreamComplete calls f.
func (f RouterStreamerFunc) StreamComplete(ctx context.Context, req *routerv1.StreamCompleteRequest) (RouterStream, error) {
	return f(ctx, req)
}

// streamClient is the streaming half of routerv1connect.RouterServiceClient.
type streamClient interface {
	StreamComplete(context.Context, *connect.Request[routerv1.StreamCompleteRequest]) (*connect.ServerStreamForClient[routerv1.StreamCompleteResponse], error)
}

// StreamerFromClient adapts a generated router client's StreamComplete.
func StreamerFromClient(c streamClient) RouterStreamer {
	return RouterStreamerFunc(func(ctx context.Context, req *routerv1.StreamCompleteRequest) (RouterStream, error) {
		s, err := c.StreamComplete(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// AuditPublisher records audit events durably. The default (built by New from
// NATS) publishes to JetStream and spools to disk; tests and the all-in-one
// binary may pass their own.
type AuditPublisher interface {
	Record(ctx context.Context, ev *auditv1.AuditEvent) error
	Durable() bool
}

// depErr turns a Connect error into the pipeline's sentinel errors, keeping the
// dependency's message out of client-facing text except for the router's
// refusals.
func depErr(dep string, err error, authn bool) error {
	if err == nil {
		return nil
	}
	// The router's refusals (vendor risk, data classes, providers allowed by
	// policy) are written for the caller: they name models, providers and data
	// classes, never payload data or keys. Saying why is what lets an
	// application owner fix the request or the policy.
	if c := connect.CodeOf(err); dep == "router" && (c == connect.CodePermissionDenied || c == connect.CodeFailedPrecondition) {
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Message() != "" {
			return &pipeline.Denial{Kind: pipeline.KindForbidden, Message: "routing refused: " + ce.Message()}
		}
	}
	var kind error
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated:
		kind = pipeline.ErrUnauthenticated
	case connect.CodePermissionDenied, connect.CodeNotFound:
		if authn {
			kind = pipeline.ErrUnauthenticated
		} else if connect.CodeOf(err) == connect.CodeNotFound {
			kind = pipeline.ErrNotFound
		} else {
			kind = pipeline.ErrRejected
		}
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		kind = pipeline.ErrRejected
	case connect.CodeDeadlineExceeded:
		kind = pipeline.ErrDeadline
	default:
		if errors.Is(err, context.DeadlineExceeded) {
			kind = pipeline.ErrDeadline
		} else {
			kind = pipeline.ErrUnavailable
		}
	}
	return fmt.Errorf("%s: %w (%s)", dep, kind, connect.CodeOf(err))
}

// adapters from the Connect-shaped interfaces to the pipeline's plain ones.

type identityAdapter struct {
	authn Authenticator
	authz Authorizer
}

func (a identityAdapter) Authenticate(ctx context.Context, r *identityv1.AuthenticateRequest) (*identityv1.AuthenticateResponse, error) {
	res, err := a.authn.Authenticate(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("identity", err, true)
	}
	return res.Msg, nil
}

func (a identityAdapter) Authorize(ctx context.Context, r *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error) {
	res, err := a.authz.Authorize(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("identity", err, false)
	}
	return res.Msg, nil
}

type limiterAdapter struct{ l Limiter }

func (a limiterAdapter) Reserve(ctx context.Context, r *ratelimitv1.ReserveRequest) (*ratelimitv1.ReserveResponse, error) {
	res, err := a.l.Reserve(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("ratelimit", err, false)
	}
	return res.Msg, nil
}

func (a limiterAdapter) Settle(ctx context.Context, r *ratelimitv1.SettleRequest) (*ratelimitv1.SettleResponse, error) {
	res, err := a.l.Settle(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("ratelimit", err, false)
	}
	return res.Msg, nil
}

func (a limiterAdapter) Release(ctx context.Context, r *ratelimitv1.ReleaseRequest) (*ratelimitv1.ReleaseResponse, error) {
	res, err := a.l.Release(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("ratelimit", err, false)
	}
	return res.Msg, nil
}

type redactorAdapter struct{ r Redactor }

func (a redactorAdapter) Redact(ctx context.Context, r *redactionv1.RedactRequest) (*redactionv1.RedactResponse, error) {
	res, err := a.r.Redact(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("redaction", err, false)
	}
	return res.Msg, nil
}

type routerAdapter struct {
	r Router
	s RouterStreamer
}

func (a routerAdapter) Complete(ctx context.Context, r *routerv1.CompleteRequest) (*routerv1.CompleteResponse, error) {
	res, err := a.r.Complete(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("router", err, false)
	}
	return res.Msg, nil
}

func (a routerAdapter) Embed(ctx context.Context, r *routerv1.EmbedRequest) (*routerv1.EmbedResponse, error) {
	res, err := a.r.Embed(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("router", err, false)
	}
	return res.Msg, nil
}

func (a routerAdapter) ListModels(ctx context.Context, r *routerv1.ListModelsRequest) (*routerv1.ListModelsResponse, error) {
	res, err := a.r.ListModels(ctx, connect.NewRequest(r))
	if err != nil {
		return nil, depErr("router", err, false)
	}
	return res.Msg, nil
}

func (a routerAdapter) StreamComplete(ctx context.Context, r *routerv1.StreamCompleteRequest) (pipeline.Stream, error) {
	s, err := a.s.StreamComplete(ctx, r)
	if err != nil {
		return nil, depErr("router", err, false)
	}
	return streamAdapter{s}, nil
}

type streamAdapter struct{ RouterStream }

// Buffered says whether the next message is already waiting (see
// pipeline.BufferedStream); streams that cannot tell say no.
func (s streamAdapter) Buffered() bool {
	b, ok := s.RouterStream.(interface{ Buffered() bool })
	return ok && b.Buffered()
}

func (s streamAdapter) Err() error {
	if err := s.RouterStream.Err(); err != nil {
		return depErr("router", err, false)
	}
	return nil
}
