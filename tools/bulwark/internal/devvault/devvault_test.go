package devvault_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/devvault"
)

func client(t *testing.T, path, token string) *vault.Client {
	t.Helper()
	s, err := devvault.Open(path, "tok")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	cfg := vault.DefaultConfig()
	cfg.Address = ts.URL
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// TestDevVault_KVv2WithCheckAndSetPersistsAcrossReopen drives the secret file
// with the real Vault client the services use.
func TestDevVault_KVv2WithCheckAndSetPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secrets.json")
	c := client(t, path, "tok")
	kv := c.KVv2("secret")
	if _, err := kv.Get(ctx, "a/b"); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Fatalf("missing secret: %v", err)
	}
	key1, err := payloadhash.ReadKey(ctx, payloadhash.VaultParams{Client: c, Mount: "secret", Path: "k", Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", map[string]any{"key": "x"}, vault.WithCheckAndSet(0)); err == nil {
		t.Fatal("check-and-set 0 overwrote an existing secret")
	}
	// a second process (reopened file) reads the same key
	key2, err := payloadhash.ReadKey(ctx, payloadhash.VaultParams{Client: client(t, path, "tok"), Mount: "secret", Path: "k", Create: true})
	if err != nil || string(key1) != string(key2) {
		t.Fatalf("key not kept across reopen: %v", err)
	}
	m, err := kv.GetMetadata(ctx, "k")
	if err != nil || m.CurrentVersion != 1 {
		t.Fatalf("metadata: %+v %v", m, err)
	}
}

// TestDevVault_TransitEd25519SignaturesVerifyAndWrongTokenIsRefused checks the
// signing path the audit service uses and that the token is enforced.
func TestDevVault_TransitEd25519SignaturesVerifyAndWrongTokenIsRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secrets.json")
	c := client(t, path, "tok")
	if _, err := c.Logical().WriteWithContext(ctx, "transit/keys/k", map[string]any{"type": "ed25519"}); err != nil {
		t.Fatal(err)
	}
	sec, err := c.Logical().ReadWithContext(ctx, "transit/keys/k")
	if err != nil || sec == nil {
		t.Fatalf("read key: %v", err)
	}
	pub, _ := base64.StdEncoding.DecodeString(sec.Data["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string))
	msg := []byte("checkpoint")
	out, err := c.Logical().WriteWithContext(ctx, "transit/sign/k", map[string]any{"input": base64.StdEncoding.EncodeToString(msg)})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(out.Data["signature"].(string), "vault:v1:"))
	if !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
		t.Fatal("signature does not verify")
	}
	if _, err := client(t, path, "wrong").KVv2("secret").Get(ctx, "x"); err == nil || errors.Is(err, vault.ErrSecretNotFound) {
		t.Fatalf("a wrong token was accepted: %v", err)
	}
}
