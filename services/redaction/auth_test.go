package redaction_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"

	"github.com/bulwarkhq/bulwark/services/redaction"
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
	for name, c := range map[string]redaction.Config{
		"nothing":       {},
		"no credential": {IdentityURL: "http://identity:8081"},
		"no identity":   {ServiceCredential: "bk_dev_x"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	for name, c := range map[string]redaction.Config{
		"identity":      {IdentityURL: "http://identity:8081", ServiceCredential: "bk_dev_x"},
		"auth disabled": {AuthDisabled: true},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsRedactionUse mounts redaction behind
// identity's interceptor the way cmd/redaction does: no credential is Unauthenticated,
// an application key (role app) is PermissionDenied, the system key is served.
func TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsRedactionUse(t *testing.T) {
	s := startIdentity(t)
	svc, err := redaction.New(redaction.Params{Config: redaction.Config{HashKey: "0123456789abcdef", IdentityURL: "in-test", ServiceCredential: platform.Secret(s.SystemKey)},
		Logger: slog.New(slog.DiscardHandler), HandlerOptions: s.Options})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	url := platformtest.Serve(t, mux)
	ctx := context.Background()
	for name, opts := range protocols() {
		t.Run(name, func(t *testing.T) {
			c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, opts...)
			redact := func(key string) (*connect.Response[redactionv1.RedactResponse], error) {
				return c.Redact(ctx, withKey(&redactionv1.RedactRequest{Segments: []*redactionv1.Segment{{Id: "1", Text: "mail bob@example.com"}}}, key))
			}
			if _, err := redact(""); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("no credential: %v", err)
			}
			if _, err := redact("bk_dev_not-a-real-key"); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("unknown credential: %v", err)
			}
			if _, err := redact(s.AppKey); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role: %v", err)
			}
			if _, err := c.ListProfiles(ctx, withKey(&redactionv1.ListProfilesRequest{}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role listing profiles: %v", err)
			}
			res, err := redact(s.SystemKey)
			if err != nil {
				t.Fatalf("system role: %v", err)
			}
			if got := res.Msg.GetSegments()[0].GetText(); strings.Contains(got, "bob@example.com") || !strings.Contains(got, "EMAIL_ADDRESS") {
				t.Fatalf("redacted %q", got)
			}
			if _, err := c.ListProfiles(ctx, withKey(&redactionv1.ListProfilesRequest{}, s.SystemKey)); err != nil {
				t.Fatalf("system role listing profiles: %v", err)
			}
		})
	}
}
