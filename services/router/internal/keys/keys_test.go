package keys_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
)

func put(t *testing.T, c *vault.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.KVv2("secret").Put(context.Background(), path, data); err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
}

func TestKey_NeverPrintsOrLogs(t *testing.T) {
	k := keys.NewKey("sk-very-secret")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), buf.String()} {
		if strings.Contains(s, "sk-very-secret") {
			t.Fatalf("key leaked: %s", s)
		}
	}
	if k.Reveal() != "sk-very-secret" {
		t.Fatal("reveal")
	}
}

func TestSource_ReadsDefaultAndNamedKeysFromVault(t *testing.T) {
	v := platformtest.Vault(t)
	put(t, v.Client, "bulwark/dev/providers/openai", map[string]any{"api_key": "k-default", "team_a": "k-a"})
	s := keys.New(keys.Params{Store: keys.NewVaultStore(v.Client, "secret")})
	ctx := context.Background()
	k, err := s.Key(ctx, "dev", "openai", "")
	if err != nil || k.Reveal() != "k-default" {
		t.Fatalf("%v %q", err, k.Reveal())
	}
	k, err = s.Key(ctx, "dev", "openai", "team_a")
	if err != nil || k.Reveal() != "k-a" {
		t.Fatalf("%v %q", err, k.Reveal())
	}
	if _, err := s.Key(ctx, "dev", "openai", "missing"); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Key(ctx, "prod", "openai", ""); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("prod shares dev's key: %v", err)
	}
	if _, err := s.Key(ctx, "../dev", "openai", ""); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("path traversal accepted: %v", err)
	}
}

func TestSource_PicksUpANewVersionAfterTheTTL(t *testing.T) {
	v := platformtest.Vault(t)
	put(t, v.Client, "bulwark/dev/providers/anthropic", map[string]any{"api_key": "v1"})
	now := time.Now()
	s := keys.New(keys.Params{Store: keys.NewVaultStore(v.Client, ""), TTL: time.Minute, Now: func() time.Time { return now }})
	ctx := context.Background()
	if k, _ := s.Key(ctx, "dev", "anthropic", ""); k.Reveal() != "v1" {
		t.Fatal("v1")
	}
	put(t, v.Client, "bulwark/dev/providers/anthropic", map[string]any{"api_key": "v2"})
	if k, _ := s.Key(ctx, "dev", "anthropic", ""); k.Reveal() != "v1" {
		t.Fatal("cache not used within the TTL")
	}
	now = now.Add(2 * time.Minute)
	if k, _ := s.Key(ctx, "dev", "anthropic", ""); k.Reveal() != "v2" {
		t.Fatalf("rotated key not picked up: %q", k.Reveal())
	}
}

func TestSource_KeepsTheCachedKeyWhenVaultGoesAway(t *testing.T) {
	v := platformtest.Vault(t)
	put(t, v.Client, "bulwark/dev/providers/openai", map[string]any{"api_key": "cached"})
	c, err := v.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	now := time.Now()
	s := keys.New(keys.Params{Store: keys.NewVaultStore(c, ""), TTL: time.Second, Now: func() time.Time { return now }})
	if k, _ := s.Key(context.Background(), "dev", "openai", ""); k.Reveal() != "cached" {
		t.Fatal("first read")
	}
	c.SetToken("revoked-token")
	now = now.Add(time.Hour)
	k, err := s.Key(context.Background(), "dev", "openai", "")
	if err != nil || k.Reveal() != "cached" {
		t.Fatalf("%v %q", err, k.Reveal())
	}
}

func TestSource_ErrorsNeverCarryTheKey(t *testing.T) {
	v := platformtest.Vault(t)
	put(t, v.Client, "bulwark/dev/providers/openai", map[string]any{"api_key": "sk-leak-check"})
	s := keys.New(keys.Params{Store: keys.NewVaultStore(v.Client, "")})
	_, err := s.Key(context.Background(), "dev", "openai", "other")
	if err == nil || strings.Contains(err.Error(), "sk-leak-check") {
		t.Fatalf("err = %v", err)
	}
}

func TestSource_AppRoleIdentityReadsOnlyItsEnvironment(t *testing.T) {
	v := platformtest.Vault(t)
	ctx := context.Background()
	put(t, v.Client, "bulwark/dev/providers/openai", map[string]any{"api_key": "dev-key"})
	put(t, v.Client, "bulwark/prod/providers/openai", map[string]any{"api_key": "prod-key"})
	policy := `path "secret/data/bulwark/dev/providers/*" { capabilities = ["read"] }
path "secret/metadata/bulwark/dev/providers/*" { capabilities = ["read"] }`
	if err := v.Client.Sys().PutPolicyWithContext(ctx, "router-dev", policy); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/approle/role/router-dev", map[string]any{"token_policies": "router-dev", "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	rid, err := v.Client.Logical().ReadWithContext(ctx, "auth/approle/role/router-dev/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := v.Client.Logical().WriteWithContext(ctx, "auth/approle/role/router-dev/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := platform.NewVault(lctx, platform.VaultConfig{Addr: v.Addr, RoleID: rid.Data["role_id"].(string),
		SecretID: platform.Secret(sid.Data["secret_id"].(string)), AppRoleMount: "approle"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := keys.New(keys.Params{Store: keys.NewVaultStore(c, "")})
	if k, err := s.Key(ctx, "dev", "openai", ""); err != nil || k.Reveal() != "dev-key" {
		t.Fatalf("%v", err)
	}
	if _, err := s.Key(ctx, "prod", "openai", ""); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("dev identity read prod: %v", err)
	}
}
