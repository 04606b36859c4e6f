package ratelimit_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
)

// authStack is a real identity service mounted in-process, with the keys the
// authorization tests call with: the service's own system key, an admin key and
// an application key (role app, which holds none of this service's permissions).
type authStack struct {
	Options   []connect.HandlerOption
	SystemKey string
	AdminKey  string
	AdminID   string
	AppKey    string
	NATS      *nats.Conn
	JS        jetstream.JetStream
	Vault     *platformtest.VaultServer
}

func startIdentity(t *testing.T) *authStack {
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
	s := &authStack{NATS: nc, JS: js, Vault: vs, AdminID: "usr_auth_test_admin",
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

// withKey returns a request carrying key as its bearer credential ("" sends none).
func withKey[T any](msg *T, key string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if key != "" {
		req.Header().Set("Authorization", "Bearer "+key)
	}
	return req
}

func protocols() map[string][]connect.ClientOption {
	return map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}
}

func TestConfig_RequiresIdentityUnlessAuthIsDisabled(t *testing.T) {
	for name, c := range map[string]ratelimit.Config{
		"nothing":       {},
		"no credential": {IdentityURL: "http://identity:8081"},
		"no identity":   {ServiceCredential: "bk_dev_x"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	for name, c := range map[string]ratelimit.Config{
		"identity":      {IdentityURL: "http://identity:8081", ServiceCredential: "bk_dev_x"},
		"auth disabled": {AuthDisabled: true},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsItsPermission mounts ratelimit behind
// identity's interceptor the way cmd/ratelimit does: no credential is Unauthenticated,
// an application key (role app, without ratelimit.reserve) is PermissionDenied, the
// system key reserves and releases.
func TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsItsPermission(t *testing.T) {
	s := startIdentity(t)
	rdb, prefix := platformtest.Redis(t)
	cfg := defaults(t)
	cfg.KeyPrefix, cfg.Anomaly = prefix, false
	cfg.IdentityURL, cfg.ServiceCredential = "in-test", platform.Secret(s.SystemKey)
	svc, err := ratelimit.New(context.Background(), ratelimit.Params{Config: cfg, Logger: slog.New(slog.DiscardHandler), Redis: rdb, HandlerOptions: s.Options})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	url := platformtest.Serve(t, mux)
	ctx := context.Background()
	for name, opts := range protocols() {
		t.Run(name, func(t *testing.T) {
			c := ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), url, opts...)
			reserve := func(key string) (*connect.Response[ratelimitv1.ReserveResponse], error) {
				return c.Reserve(ctx, withKey(&ratelimitv1.ReserveRequest{RequestId: "authz-" + name + "-" + key[:min(len(key), 12)], Subject: subject("authz-" + name),
					Limits: limits(), EstimatedInputTokens: 10}, key))
			}
			if _, err := reserve(""); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("no credential: %v", err)
			}
			if _, err := reserve("bk_dev_not-a-real-key"); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("unknown credential: %v", err)
			}
			if _, err := reserve(s.AppKey); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role: %v", err)
			}
			if _, err := c.GetUsage(ctx, withKey(&ratelimitv1.GetUsageRequest{Subject: subject("authz-" + name), Limits: limits()}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role reading usage: %v", err)
			}
			res, err := reserve(s.SystemKey)
			if err != nil || !res.Msg.GetAllowed() {
				t.Fatalf("system role: %v %v", err, res)
			}
			if _, err := c.Release(ctx, withKey(&ratelimitv1.ReleaseRequest{ReservationId: res.Msg.GetReservationId()}, "")); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("release without credential: %v", err)
			}
			rel, err := c.Release(ctx, withKey(&ratelimitv1.ReleaseRequest{ReservationId: res.Msg.GetReservationId()}, s.SystemKey))
			if err != nil || !rel.Msg.GetReleased() {
				t.Fatalf("system role release: %v %v", err, rel)
			}
		})
	}
}
