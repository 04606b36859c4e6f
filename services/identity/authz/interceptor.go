package authz

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
)

// InterceptorParams configures an Interceptor.
type InterceptorParams struct {
	// Identity authenticates callers' credentials (Authenticate is public).
	Identity identityv1connect.IdentityServiceClient
	// Policy decides; it is called with ServiceCredential.
	Policy identityv1connect.PolicyServiceClient
	// ServiceCredential is this service's own key (role "system").
	ServiceCredential string
	Logger            *slog.Logger
	// CacheTTL keeps a decision per credential and procedure; 0 means 2s, negative disables.
	CacheTTL time.Duration
	Now      func() time.Time
}

// Interceptor enforces the table in a service other than identity: it
// authenticates the caller's bearer credential with IdentityService and asks
// PolicyService whether the caller's principal may perform the procedure's action.
type Interceptor struct {
	p     InterceptorParams
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	caller *identityv1.AuthenticateResponse
	err    error
	until  time.Time
}

// NewInterceptor validates params.
func NewInterceptor(p InterceptorParams) (*Interceptor, error) {
	if p.Identity == nil || p.Policy == nil || p.Logger == nil || p.ServiceCredential == "" {
		return nil, errors.New("authz: Identity, Policy, ServiceCredential and Logger are required")
	}
	if p.CacheTTL == 0 {
		p.CacheTTL = 2 * time.Second
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return &Interceptor{p: p, cache: map[[32]byte]cached{}}, nil
}

type callerKey struct{}

// CallerFrom returns the authenticated caller an Interceptor put in ctx.
func CallerFrom(ctx context.Context) (*identityv1.AuthenticateResponse, bool) {
	c, ok := ctx.Value(callerKey{}).(*identityv1.AuthenticateResponse)
	return c, ok
}

// BearerCredential extracts "Authorization: Bearer <credential>" (or X-Api-Key).
func BearerCredential(h http.Header) string {
	if v := h.Get("Authorization"); v != "" {
		if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
		return ""
	}
	return strings.TrimSpace(h.Get("X-Api-Key"))
}

// Check authorizes one call and returns the context carrying the caller.
func (i *Interceptor) Check(ctx context.Context, procedure string, header http.Header) (context.Context, error) {
	rule, ok := RuleFor(procedure)
	if !ok {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("no authorization rule for %s", procedure))
	}
	if rule.Public {
		return ctx, nil
	}
	cred := BearerCredential(header)
	if cred == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("missing bearer credential"))
	}
	key := sha256.Sum256([]byte(procedure + "\x00" + cred))
	now := i.p.Now()
	if i.p.CacheTTL > 0 {
		i.mu.Lock()
		c, hit := i.cache[key]
		i.mu.Unlock()
		if hit && now.Before(c.until) {
			if c.err != nil {
				return nil, c.err
			}
			return context.WithValue(ctx, callerKey{}, c.caller), nil
		}
	}
	caller, err := i.decide(ctx, rule, cred)
	var ce *connect.Error
	if i.p.CacheTTL > 0 && (err == nil || (errors.As(err, &ce) && ce.Code() != connect.CodeUnavailable)) {
		i.mu.Lock()
		if len(i.cache) > 100_000 {
			i.cache = map[[32]byte]cached{}
		}
		i.cache[key] = cached{caller: caller, err: err, until: now.Add(i.p.CacheTTL)}
		i.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, callerKey{}, caller), nil
}

func (i *Interceptor) decide(ctx context.Context, rule Rule, cred string) (*identityv1.AuthenticateResponse, error) {
	auth, err := i.p.Identity.Authenticate(ctx, connect.NewRequest(&identityv1.AuthenticateRequest{Credential: cred}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid credential"))
		}
		i.p.Logger.WarnContext(ctx, "identity unavailable for authentication", "err", err)
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("authentication unavailable; retry"))
	}
	a := auth.Msg
	req := connect.NewRequest(&identityv1.AuthorizeRequest{PrincipalId: a.Principal.GetId(), Action: rule.Action,
		Resource: &identityv1.Resource{Environment: a.Environment}, Mfa: a.Mfa, ApiKeyScopes: a.Scopes})
	req.Header().Set("Authorization", "Bearer "+i.p.ServiceCredential)
	d, err := i.p.Policy.Authorize(ctx, req)
	if err != nil {
		i.p.Logger.WarnContext(ctx, "identity unavailable for authorization", "err", err)
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("authorization unavailable; retry"))
	}
	if !d.Msg.Allowed {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("permission denied: "+strings.Join(d.Msg.Reasons, "; ")))
	}
	return a, nil
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.Check(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.Check(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// AuthFunc adapts Check to the platform kit's auth hook signature
// (func(ctx, connect.Spec, http.Header) (context.Context, error)).
func (i *Interceptor) AuthFunc() func(context.Context, connect.Spec, http.Header) (context.Context, error) {
	return func(ctx context.Context, spec connect.Spec, h http.Header) (context.Context, error) {
		return i.Check(ctx, spec.Procedure, h)
	}
}
