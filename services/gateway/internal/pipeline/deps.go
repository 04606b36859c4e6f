// Package pipeline is the governed request path of the gateway: authenticate,
// authorize (with the data classes redaction found), reserve, redact, route,
// restore, settle and audit. It knows the dependencies only through the small
// interfaces below, in protobuf types and without any transport, so the same
// pipeline runs with Connect clients (split) or in-process handlers (all-in-one).
package pipeline

import (
	"context"
	"errors"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
)

// Dependency errors. Adapters wrap what a dependency answered in one of these,
// so the pipeline can decide without knowing the transport.
var (
	// ErrUnauthenticated means the credential was refused.
	ErrUnauthenticated = errors.New("credential refused")
	// ErrUnavailable means a dependency could not answer (down, timed out, overloaded).
	ErrUnavailable = errors.New("dependency unavailable")
	// ErrDeadline means a dependency did not answer in time.
	ErrDeadline = errors.New("dependency deadline exceeded")
	// ErrNotFound means a dependency does not know what was asked for (e.g. a model alias).
	ErrNotFound = errors.New("not found")
	// ErrRejected means a dependency refused the request as invalid or not permitted.
	ErrRejected = errors.New("request rejected by dependency")
)

// Authenticator resolves a credential to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, req *identityv1.AuthenticateRequest) (*identityv1.AuthenticateResponse, error)
}

// Authorizer makes the policy decision.
type Authorizer interface {
	Authorize(ctx context.Context, req *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error)
}

// Limiter holds requests to their limits and budgets.
type Limiter interface {
	Reserve(ctx context.Context, req *ratelimitv1.ReserveRequest) (*ratelimitv1.ReserveResponse, error)
	Settle(ctx context.Context, req *ratelimitv1.SettleRequest) (*ratelimitv1.SettleResponse, error)
	Release(ctx context.Context, req *ratelimitv1.ReleaseRequest) (*ratelimitv1.ReleaseResponse, error)
}

// Redactor redacts the texts of one request.
type Redactor interface {
	Redact(ctx context.Context, req *redactionv1.RedactRequest) (*redactionv1.RedactResponse, error)
}

// Stream is a server stream of provider events.
type Stream interface {
	Receive() bool
	Msg() *routerv1.StreamCompleteResponse
	Err() error
	Close() error
}

// BufferedStream is a Stream that can tell whether its next message is
// already here, so that the front door can send the events it has with one
// flush instead of one per event. Streams without it flush every event.
type BufferedStream interface {
	Stream
	Buffered() bool
}

// Router sends calls to providers.
type Router interface {
	Complete(ctx context.Context, req *routerv1.CompleteRequest) (*routerv1.CompleteResponse, error)
	StreamComplete(ctx context.Context, req *routerv1.StreamCompleteRequest) (Stream, error)
	Embed(ctx context.Context, req *routerv1.EmbedRequest) (*routerv1.EmbedResponse, error)
	ListModels(ctx context.Context, req *routerv1.ListModelsRequest) (*routerv1.ListModelsResponse, error)
}

// Recorder durably records audit events.
type Recorder interface {
	// Record stores ev durably (acknowledged by JetStream, or fsynced to the local
	// spool) before it returns nil.
	Record(ctx context.Context, ev *auditv1.AuditEvent) error
	// Durable reports whether Record can currently succeed (strict mode asks before calling a provider).
	Durable() bool
}
