package oidc_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/identity/internal/natskv"
	"github.com/bulwarkhq/bulwark/services/identity/internal/oidc"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func TestAuthenticate_OIDCProvisionsPersonAndKeepsRolesInSyncWithTheIssuer(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark", RoleMap: map[string]string{"eng": "developer", "ops": "admin"},
		Environments: []string{"dev", "staging"}}, time.Second)
	nc, js := platformtest.NATS(t)
	ctx := context.Background()
	st, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: js, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pepper := make([]byte, 32)
	_, _ = rand.Read(pepper)
	svc, err := identity.New(identity.Params{Store: st, Publisher: natskv.NewPublisher(nc, js), Verifier: v, Pepper: pepper,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}

	first, err := svc.Authenticate(ctx, is.sign(is.claims("alice", time.Minute, map[string]any{"roles": []string{"eng"}, "amr": []string{"pwd", "hwk"}})), "staging")
	if err != nil {
		t.Fatal(err)
	}
	p := first.Principal
	if first.Method != identityv1.AuthMethod_AUTH_METHOD_OIDC || !first.Mfa || p.Kind != identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON ||
		p.Email != "alice@example.com" || len(p.Roles) != 1 || p.Roles[0] != "developer" || p.OidcSubject != is.srv.URL+"|alice" {
		t.Fatalf("first login = %v", first)
	}
	second, err := svc.Authenticate(ctx, is.sign(is.claims("alice", time.Minute, map[string]any{"roles": []string{"ops"}})), "")
	if err != nil {
		t.Fatal(err)
	}
	if second.Principal.Id != p.Id || second.Principal.Roles[0] != "admin" || second.Mfa {
		t.Fatalf("second login = %v", second)
	}
	if _, err := svc.Authenticate(ctx, is.sign(is.claims("alice", time.Minute, nil)), "prod"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("login into an environment the issuer did not grant: %v", err)
	}
}
