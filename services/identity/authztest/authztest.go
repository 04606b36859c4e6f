// Package authztest gives other services' tests a real identity service,
// mounted in-process on a real HTTP/2 server against real NATS and Vault, with
// keys for three roles, and the handler options that enforce identity's
// permission table exactly as each service's cmd does in split mode.
package authztest

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// Stack is a running identity service and the keys tests call with: a
// service's own system key, an admin key, and an application key (role app).
type Stack struct {
	// Options enforce identity's permission table; pass them to the service under test.
	Options []connect.HandlerOption
	// SystemKey has role system, as a service's own credential.
	SystemKey string
	// AdminKey has role admin.
	AdminKey string
	// AdminID is the admin's principal id.
	AdminID string
	// AppKey has role app.
	AppKey string
	// NATS is the connection identity uses.
	NATS *nats.Conn
	// JS is the JetStream context identity uses.
	JS jetstream.JetStream
	// Vault is the Vault dev server identity uses.
	Vault *platformtest.VaultServer
}

// Start runs identity for the test and bootstraps the three principals.
func Start(t *testing.T) *Stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	nc, js := platformtest.NATS(t)
	vs := platformtest.Vault(t)
	var ic identity.Config
	if err := platform.LoadConfig("BULWARK_AUTH_TEST_UNSET_", &ic); err != nil {
		t.Fatal(err)
	}
	ic.PepperCreate = true
	idn, err := identity.New(ctx, identity.Params{Config: ic, Logger: log, NATS: nc, JetStream: js, Vault: vs.Client})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	s := &Stack{NATS: nc, JS: js, Vault: vs, AdminID: "usr_auth_test_admin",
		SystemKey: identity.GenerateKey("dev"), AdminKey: identity.GenerateKey("dev"), AppKey: identity.GenerateKey("dev")}
	for _, b := range []identity.BootstrapParams{
		{PrincipalID: "svc_auth_test_system", Roles: []string{"system"}, Key: s.SystemKey},
		{PrincipalID: s.AdminID, Roles: []string{"admin"}, Key: s.AdminKey},
		{PrincipalID: "app_auth_test", Roles: []string{"app"}, Key: s.AppKey},
	} {
		if _, err := idn.Bootstrap(ctx, b); err != nil {
			t.Fatalf("bootstrap %s: %v", b.PrincipalID, err)
		}
	}
	mux := http.NewServeMux()
	for _, svc := range idn.Services {
		mux.Handle(svc.Path, svc.Handler)
	}
	idURL := platformtest.Serve(t, mux)
	hc := platform.HTTPClient()
	az, err := authz.NewInterceptor(authz.InterceptorParams{
		Identity:          identityv1connect.NewIdentityServiceClient(hc, idURL),
		Policy:            identityv1connect.NewPolicyServiceClient(hc, idURL),
		ServiceCredential: s.SystemKey, Logger: log, CacheTTL: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Options = platform.HandlerOptions(platform.InterceptorParams{Logger: log, Auth: az.AuthFunc()})
	return s
}

// WithKey returns a request carrying key as its bearer credential ("" sends none).
func WithKey[T any](msg *T, key string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if key != "" {
		req.Header().Set("Authorization", "Bearer "+key)
	}
	return req
}

// Protocols are the client protocols every handler test runs through.
func Protocols() map[string][]connect.ClientOption {
	return map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}
}
