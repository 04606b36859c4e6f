package redaction_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authztest"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"

	"github.com/bulwarkhq/bulwark/services/redaction"
)

func TestConfig_RequiresIdentityUnlessAuthIsDisabled(t *testing.T) {
	platformtest.ServiceAuthValidated(t, func(a platform.ServiceAuth) error { return redaction.Config{ServiceAuth: a}.Validate() })
}

// TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsRedactionUse mounts redaction behind
// identity's interceptor the way cmd/redaction does: no credential is Unauthenticated,
// an application key (role app) is PermissionDenied, the system key is served.
func TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsRedactionUse(t *testing.T) {
	s := authztest.Start(t)
	svc, err := redaction.New(redaction.Params{Config: redaction.Config{HashKey: "0123456789abcdef", ServiceAuth: platform.ServiceAuth{IdentityURL: "in-test", ServiceCredential: platform.Secret(s.SystemKey)}},
		Logger: slog.New(slog.DiscardHandler), HandlerOptions: s.Options})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	url := platformtest.Serve(t, mux)
	ctx := context.Background()
	for name, opts := range authztest.Protocols() {
		t.Run(name, func(t *testing.T) {
			c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, opts...)
			redact := func(key string) (*connect.Response[redactionv1.RedactResponse], error) {
				return c.Redact(ctx, authztest.WithKey(&redactionv1.RedactRequest{Segments: []*redactionv1.Segment{{Id: "1", Text: "mail bob@example.com"}}}, key))
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
			if _, err := c.ListProfiles(ctx, authztest.WithKey(&redactionv1.ListProfilesRequest{}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role listing profiles: %v", err)
			}
			res, err := redact(s.SystemKey)
			if err != nil {
				t.Fatalf("system role: %v", err)
			}
			if got := res.Msg.GetSegments()[0].GetText(); strings.Contains(got, "bob@example.com") || !strings.Contains(got, "EMAIL_ADDRESS") {
				t.Fatalf("redacted %q", got)
			}
			if _, err := c.ListProfiles(ctx, authztest.WithKey(&redactionv1.ListProfilesRequest{}, s.SystemKey)); err != nil {
				t.Fatalf("system role listing profiles: %v", err)
			}
		})
	}
}
