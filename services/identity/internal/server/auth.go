package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

type callerKey struct{}

// Caller is the authenticated principal of a call.
type Caller struct {
	Principal   *identityv1.Principal
	MFA         bool
	Environment string
	APIKeyID    string
}

// CallerFrom returns the caller the authorizer put in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

func actorFrom(ctx context.Context) identity.Actor {
	c, _ := CallerFrom(ctx)
	a := identity.Actor{MFA: c.MFA, Environment: c.Environment}
	if c.Principal != nil {
		a.PrincipalID = c.Principal.Id
	}
	return a
}

// Authorizer is a Connect interceptor that authenticates the bearer credential of
// every call and authorizes the procedure's action (from the authz table) with the
// policy decision, including environment binding, key scopes and MFA.
type Authorizer struct {
	svc *identity.Service
	log *slog.Logger
}

// NewAuthorizer returns the interceptor.
func NewAuthorizer(svc *identity.Service, log *slog.Logger) *Authorizer {
	return &Authorizer{svc: svc, log: log}
}

// Credential extracts the bearer credential of a call.
func Credential(h http.Header) string {
	if v := h.Get("Authorization"); v != "" {
		if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
		return ""
	}
	return strings.TrimSpace(h.Get("X-Api-Key"))
}

// Check authorizes one call; it returns the context carrying the Caller.
func (a *Authorizer) Check(ctx context.Context, procedure string, header http.Header, msg any) (context.Context, error) {
	rule, ok := authz.RuleFor(procedure)
	if !ok {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("no authorization rule for %s", procedure))
	}
	if rule.Public {
		return ctx, nil
	}
	cred := Credential(header)
	if cred == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("missing bearer credential"))
	}
	auth, err := a.svc.Authenticate(ctx, cred, "")
	if err != nil {
		if errors.Is(err, identity.ErrUnavailable) {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("authentication unavailable; retry"))
		}
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid credential"))
	}
	res := resourceOf(msg)
	// A key works in its environment only: it cannot change another one (reads
	// across environments are allowed). Requests that name no environment are
	// decided under the production policy.
	if rule.Admin && auth.ApiKeyId != "" && res.Environment != "" && res.Environment != auth.Environment {
		return nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("a %s key cannot act in %s", auth.Environment, res.Environment))
	}
	d, err := a.svc.Authorize(ctx, &identityv1.AuthorizeRequest{
		PrincipalId: auth.Principal.Id, Action: rule.Action, Resource: res, Mfa: auth.Mfa, ApiKeyScopes: auth.Scopes,
	})
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("authorization unavailable; retry"))
	}
	if !d.Allowed {
		a.log.InfoContext(ctx, "call refused", "procedure", procedure, "principal_id", auth.Principal.Id, "reasons", d.Reasons)
		msg := "permission denied: " + strings.Join(d.Reasons, "; ")
		if d.MfaRequired {
			msg = "a second factor is required: " + strings.Join(d.Reasons, "; ")
		}
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New(msg))
	}
	return context.WithValue(ctx, callerKey{}, Caller{Principal: auth.Principal, MFA: auth.Mfa, Environment: auth.Environment, APIKeyID: auth.ApiKeyId}), nil
}

// resourceOf reads the environment and target an admin request names, by field
// name, so that every RPC is decided with the environment it acts in.
func resourceOf(msg any) *identityv1.Resource {
	res := &identityv1.Resource{}
	m, ok := msg.(proto.Message)
	if !ok {
		return res
	}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	str := func(name protoreflect.Name) string {
		f := fields.ByName(name)
		if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() {
			return ""
		}
		return r.Get(f).String()
	}
	res.Environment = str("environment")
	for _, name := range []protoreflect.Name{"id", "principal_id", "target", "prompt_id", "ref"} {
		if v := str(name); v != "" {
			res.Target = v
			break
		}
	}
	return res
}

// WrapUnary implements connect.Interceptor.
func (a *Authorizer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.Check(ctx, req.Spec().Procedure, req.Header(), req.Any())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (a *Authorizer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor. The identity services have
// no streaming RPCs; any that appears is authorized on its headers.
func (a *Authorizer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.Check(ctx, conn.Spec().Procedure, conn.RequestHeader(), nil)
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
