package router_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authztest"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router"
)

func TestConfig_RequiresIdentityUnlessAuthIsDisabled(t *testing.T) {
	platformtest.ServiceAuthValidated(t, func(a platform.ServiceAuth) error { return router.Config{ServiceAuth: a}.Validate() })
}

// TestAuthz_AdminRPCsNeedTheirPermissionAndAuditTheAuthenticatedPrincipal mounts the
// router behind identity's interceptor the way cmd/router does and proves that a
// caller without a credential, or whose role lacks router.provider.write, is refused,
// and that the admin_action event names the authenticated principal even when the
// request carries a forged X-Bulwark-Actor header.
func TestAuthz_AdminRPCsNeedTheirPermissionAndAuditTheAuthenticatedPrincipal(t *testing.T) {
	s := authztest.Start(t)
	ctx := context.Background()
	if _, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	svc, err := router.New(router.Params{Config: router.Config{SimulatorURL: "http://127.0.0.1:1", KeyMount: "secret", KeyPathPrefix: "bulwark/",
		ServiceAuth: platform.ServiceAuth{IdentityURL: "in-test", ServiceCredential: platform.Secret(s.SystemKey)}},
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
	for name, opts := range authztest.Protocols() {
		t.Run(name, func(t *testing.T) {
			c := routerv1connect.NewRouterServiceClient(platform.HTTPClient(), url, opts...)
			put := func(key, forged string) error {
				req := authztest.WithKey(&routerv1.PutProviderRequest{Provider: &routerv1.Provider{Name: "compat-" + name, Kind: routerv1.ProviderKind_PROVIDER_KIND_OPENAI,
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
			if _, err := c.SetProviderEnabled(ctx, authztest.WithKey(&routerv1.SetProviderEnabledRequest{Name: "openai", Enabled: true}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role disabling a provider: %v", err)
			}
			if _, err := c.PutRoute(ctx, authztest.WithKey(&routerv1.PutRouteRequest{}, "")); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("route without credential: %v", err)
			}
			if _, err := c.ListProviders(ctx, authztest.WithKey(&routerv1.ListProvidersRequest{}, s.SystemKey)); err != nil {
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
