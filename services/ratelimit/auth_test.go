package ratelimit_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authztest"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
)

func TestConfig_RequiresIdentityUnlessAuthIsDisabled(t *testing.T) {
	platformtest.ServiceAuthValidated(t, func(a platform.ServiceAuth) error { return ratelimit.Config{ServiceAuth: a}.Validate() })
}

// TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsItsPermission mounts ratelimit behind
// identity's interceptor the way cmd/ratelimit does: no credential is Unauthenticated,
// an application key (role app, without ratelimit.reserve) is PermissionDenied, the
// system key reserves and releases.
func TestAuthz_EveryRPCNeedsACredentialWhoseRoleHoldsItsPermission(t *testing.T) {
	s := authztest.Start(t)
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
	for name, opts := range authztest.Protocols() {
		t.Run(name, func(t *testing.T) {
			c := ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), url, opts...)
			reserve := func(key string) (*connect.Response[ratelimitv1.ReserveResponse], error) {
				return c.Reserve(ctx, authztest.WithKey(&ratelimitv1.ReserveRequest{RequestId: "authz-" + name + "-" + key[:min(len(key), 12)], Subject: subject("authz-" + name),
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
			if _, err := c.ReserveBatch(ctx, authztest.WithKey(&ratelimitv1.ReserveBatchRequest{}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role batch: %v", err)
			}
			if _, err := c.GetUsage(ctx, authztest.WithKey(&ratelimitv1.GetUsageRequest{Subject: subject("authz-" + name), Limits: limits()}, s.AppKey)); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("app role reading usage: %v", err)
			}
			res, err := reserve(s.SystemKey)
			if err != nil || !res.Msg.GetAllowed() {
				t.Fatalf("system role: %v %v", err, res)
			}
			if _, err := c.Release(ctx, authztest.WithKey(&ratelimitv1.ReleaseRequest{ReservationId: res.Msg.GetReservationId()}, "")); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("release without credential: %v", err)
			}
			rel, err := c.Release(ctx, authztest.WithKey(&ratelimitv1.ReleaseRequest{ReservationId: res.Msg.GetReservationId()}, s.SystemKey))
			if err != nil || !rel.Msg.GetReleased() {
				t.Fatalf("system role release: %v %v", err, rel)
			}
		})
	}
}
