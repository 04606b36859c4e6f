// Package server adapts the identity domain to the generated Connect handlers of
// IdentityService, PolicyService, PromptService and ChangeService, authorizes
// every call against the authz table, and maps domain errors to Connect codes.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

// Params configures the handlers.
type Params struct {
	Service *identity.Service
	Logger  *slog.Logger
	// Options are extra handler options (the platform's interceptors); the
	// authorization interceptor is added after them.
	Options []connect.HandlerOption
}

// Handler is one mounted Connect service.
type Handler struct {
	Name    string
	Path    string
	Handler http.Handler
}

// Handlers returns the four services' handlers.
func Handlers(p Params) ([]Handler, error) {
	if p.Service == nil || p.Logger == nil {
		return nil, errors.New("server: Service and Logger are required")
	}
	opts := append(append([]connect.HandlerOption{}, p.Options...), connect.WithInterceptors(NewAuthorizer(p.Service, p.Logger)))
	h := &handlers{svc: p.Service, log: p.Logger}
	var out []Handler
	add := func(name, path string, handler http.Handler) {
		out = append(out, Handler{Name: name, Path: path, Handler: handler})
	}
	path, handler := identityv1connect.NewIdentityServiceHandler(&identityHandler{h}, opts...)
	add(identityv1connect.IdentityServiceName, path, handler)
	path, handler = identityv1connect.NewPolicyServiceHandler(&policyHandler{h}, opts...)
	add(identityv1connect.PolicyServiceName, path, handler)
	path, handler = identityv1connect.NewPromptServiceHandler(&promptHandler{h}, opts...)
	add(identityv1connect.PromptServiceName, path, handler)
	path, handler = identityv1connect.NewChangeServiceHandler(&changeHandler{h}, opts...)
	add(identityv1connect.ChangeServiceName, path, handler)
	return out, nil
}

type handlers struct {
	svc *identity.Service
	log *slog.Logger
}

// toConnect maps domain errors to Connect errors. Messages of expected errors are
// written for the caller and carry no secrets; unexpected ones are logged and
// answered generically.
func (h *handlers) toConnect(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var code connect.Code
	switch {
	case errors.Is(err, identity.ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, identity.ErrExists):
		code = connect.CodeAlreadyExists
	case errors.Is(err, identity.ErrConflict):
		code = connect.CodeAborted
	case errors.Is(err, identity.ErrInvalid):
		code = connect.CodeInvalidArgument
	case errors.Is(err, identity.ErrUnauthenticated):
		return connect.NewError(connect.CodeUnauthenticated, errors.New("invalid credential"))
	case errors.Is(err, identity.ErrPermissionDenied):
		code = connect.CodePermissionDenied
	case errors.Is(err, identity.ErrFailedPrecondition):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, identity.ErrUnavailable):
		h.log.ErrorContext(ctx, "dependency unavailable", "err", err)
		return connect.NewError(connect.CodeUnavailable, errors.New("a dependency is unavailable; retry"))
	default:
		h.log.ErrorContext(ctx, "internal error", "err", err)
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
	return connect.NewError(code, err)
}
