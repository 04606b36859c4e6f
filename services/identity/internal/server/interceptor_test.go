package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// TestInterceptor_AnotherServiceEnforcesTheTableThroughIdentity mounts a router
// admin RPC behind authz.Interceptor, which asks the real identity service.
func TestInterceptor_AnotherServiceEnforcesTheTableThroughIdentity(t *testing.T) {
	s := newStack(t, false)
	admin := s.clients(s.adminKey)
	keyOf := func(role string) string {
		p, err := admin.identity.CreatePrincipal(s.ctx, connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
			Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, Roles: []string{role}, Environments: []string{"*"}}}))
		if err != nil {
			t.Fatal(err)
		}
		k, err := admin.identity.CreateApiKey(s.ctx, connect.NewRequest(&identityv1.CreateApiKeyRequest{PrincipalId: p.Msg.Principal.Id, Environment: "dev"}))
		if err != nil {
			t.Fatal(err)
		}
		return k.Msg.Secret
	}
	hc := platform.HTTPClient()
	ic, err := authz.NewInterceptor(authz.InterceptorParams{
		Identity: identityv1connect.NewIdentityServiceClient(hc, s.url), Policy: identityv1connect.NewPolicyServiceClient(hc, s.url),
		ServiceCredential: keyOf(authz.RoleSystem), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CacheTTL: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	mux := http.NewServeMux()
	mux.Handle(routerv1connect.RouterServicePutRouteProcedure, connect.NewUnaryHandler(routerv1connect.RouterServicePutRouteProcedure,
		func(ctx context.Context, req *connect.Request[routerv1.PutRouteRequest]) (*connect.Response[routerv1.PutRouteResponse], error) {
			caller, _ := authz.CallerFrom(ctx)
			seen = caller.GetPrincipal().GetId()
			return connect.NewResponse(&routerv1.PutRouteResponse{}), nil
		}, connect.WithInterceptors(ic)))
	url := platformtest.Serve(t, mux)

	call := func(key string, opts ...connect.ClientOption) error {
		c := routerv1connect.NewRouterServiceClient(hc, url, append(opts, connect.WithInterceptors(bearer(key)))...)
		_, err := c.PutRoute(s.ctx, connect.NewRequest(&routerv1.PutRouteRequest{}))
		return err
	}
	for name, opts := range protocols {
		if err := call(s.adminKey, opts...); err != nil || seen != "svc_bootstrap_admin" {
			t.Fatalf("%s: admin: %v (caller %q)", name, err, seen)
		}
		if err := call(keyOf(authz.RoleViewer), opts...); code(err) != connect.CodePermissionDenied {
			t.Fatalf("%s: viewer: %v", name, err)
		}
		if err := call("", opts...); code(err) != connect.CodeUnauthenticated {
			t.Fatalf("%s: anonymous: %v", name, err)
		}
		if err := call("bk_dev_nonsense", opts...); code(err) != connect.CodeUnauthenticated {
			t.Fatalf("%s: bad key: %v", name, err)
		}
	}
}
