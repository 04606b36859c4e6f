package authz

import (
	"context"
	"log/slog"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// ServiceAuth is how a service other than identity authenticates its
// callers in its own process (split mode).
type ServiceAuth struct {
	// Service names the service in the warning when auth is disabled.
	Service string
	// Disabled opens every RPC (local development only).
	Disabled bool
	// IdentityURL is the identity service.
	IdentityURL string
	// Credential is the service's own key, used to ask for decisions.
	Credential platform.Secret
	Logger     *slog.Logger
}

// ForService returns the auth hook of the service's handlers: every caller is
// authenticated with identity, which decides the procedure's permission from
// the shared table. With auth disabled it returns nil and says so loudly.
func ForService(ctx context.Context, a ServiceAuth) (platform.AuthFunc, error) {
	if a.Disabled {
		a.Logger.WarnContext(ctx, "authentication disabled: every "+a.Service+" RPC is open")
		return nil, nil
	}
	hc := platform.HTTPClient()
	az, err := NewInterceptor(InterceptorParams{
		Identity:          identityv1connect.NewIdentityServiceClient(hc, a.IdentityURL),
		Policy:            identityv1connect.NewPolicyServiceClient(hc, a.IdentityURL),
		ServiceCredential: a.Credential.Reveal(), Logger: a.Logger,
	})
	if err != nil {
		return nil, err
	}
	return az.AuthFunc(), nil
}
