package router_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router"
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
	if err := (router.Config{}).Validate(); err == nil {
		t.Fatal("a config without identity validated")
	}
	if err := (router.Config{IdentityURL: "http://identity:8081"}).Validate(); err == nil {
		t.Fatal("a config without a service credential validated")
	}
	if err := (router.Config{IdentityURL: "http://identity:8081", ServiceCredential: "bk_dev_x"}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (router.Config{AuthDisabled: true}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestAuthz_AdminRPCsNeedTheirPermissionAndAuditTheAuthenticatedPrincipal mounts the
// router behind identity's interceptor the way cmd/router does and proves that a
// caller without a credential, or whose role lacks router.provider.write, is refused,
// and that the admin_action event names the authenticated principal even when the
// request carries a forged X-Bulwark-Actor header.
func TestAuthz_AdminRPCsNeedTheirPermissionAndAuditTheAuthenticatedPrincipal(t *testing.T) {
	s := startIdentity(t)
	ctx := context.Background()
	if _, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	svc, err := router.New(router.Params{Config: router.Config{SimulatorURL: "http://127.0.0.1:1", KeyMount: "secret", KeyPathPrefix: "bulwark/",
		IdentityURL: "in-test", ServiceCredential: platform.Secret(s.SystemKey)},
		Logger: slog.New(slog.DiscardHandler), Vault: s.Vault.Client, JetStream: s.JS, HandlerOptions: s.Options})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	url := platformtest.Serve(t, mux)
	cons, err := s.JS.OrderedConsumer(ctx, "BULWARK_AUDIT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bulwark.audit.v1.admin_action"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range protocols() {
		t.Run(name, func(t *testing.T) {
			c := routerv1connect.NewRouterServiceClient(platform.HTTPClient(), url, opts...)
			put := func(key, forged string) error {
				req := withKey(&routerv1.PutProviderRequest{Provider: &routerv1.Provider{Name: "compat-" + name, Kind: routerv1.ProviderKind_PROVIDER_KIND_OPENAI,
					BaseUrl: "http://127.0.0.1:1/v1", Enabled: true, Vendor: &routerv1.VendorFacts{LegalName: "Local vLLM", Soc2ReportExpiry: timestamppb.New(time.Now().AddDate(0, 1, 0))}}}, key)
				if forged != "" {
					req.Header().Set("X-Bulwark-Actor", forged)
				}
				_, err := c.PutProvider(ctx, req)
				return err
			}
			if err := put("", "usr_forged"); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("no credential: %v", err)
			}
			if err := put("bk_dev_not-a-real-key", "usr_forged"); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("unknown credential: %v", err)
			}
			if err := put(s.AppKey, "usr_forged"); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role: %v", err)
			}
			if err := put(s.SystemKey, s.AdminID); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("system role writing the catalog: %v", err)
			}
			if _, err := c.SetProviderEnabled(ctx, withKey(&routerv1.SetProviderEnabledRequest{Name: "openai", Enabled: true}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role disabling a provider: %v", err)
			}
			if _, err := c.PutRoute(ctx, withKey(&routerv1.PutRouteRequest{}, "")); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("route without credential: %v", err)
			}
			if _, err := c.ListProviders(ctx, withKey(&routerv1.ListProvidersRequest{}, s.SystemKey)); err != nil {
				t.Fatalf("system role reading providers: %v", err)
			}
			if err := put(s.AdminKey, "usr_forged"); err != nil {
				t.Fatalf("admin: %v", err)
			}
			var ev auditv1.AuditEvent
			for ev.SourceService != "router" { // identity's own admin actions share the stream
				msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
					t.Fatal(err)
				}
			}
			a := ev.GetAdminAction()
			if ev.SourceService != "router" || a.GetAction() != "router.provider.put" || a.GetTarget() != "compat-"+name || a.GetActor() != s.AdminID {
				t.Fatalf("admin_action %+v", &ev)
			}
		})
	}
}
