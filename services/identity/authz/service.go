package authz

import (
	"context"
	"log/slog"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// ForService returns the auth hook of a service's handlers when it runs on
// its own: every caller is authenticated with identity, which decides the
// procedure's permission from the shared table. With auth disabled it
// returns nil and says so loudly; service names the service in that warning.
func ForService(ctx context.Context, service string, a platform.ServiceAuth, log *slog.Logger) (platform.AuthFunc, error) {
	if a.AuthDisabled {
		log.WarnContext(ctx, "authentication disabled: every "+service+" RPC is open")
		return nil, nil
	}
	hc := platform.HTTPClient()
	az, err := NewInterceptor(InterceptorParams{
		Identity:          identityv1connect.NewIdentityServiceClient(hc, a.IdentityURL),
		Policy:            identityv1connect.NewPolicyServiceClient(hc, a.IdentityURL),
		ServiceCredential: a.ServiceCredential.Reveal(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return az.AuthFunc(), nil
}
