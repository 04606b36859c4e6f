package vaultsign_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/bulwarkhq/bulwark/services/audit/internal/vaultsign"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"golang.org/x/mod/sumdb/note"
)

func TestSigner_SignsNotesThatVerifyWithTheTransitPublicKey(t *testing.T) {
	vs := platformtest.Vault(t)
	ctx := context.Background()
	s, err := vaultsign.New(ctx, vaultsign.Params{Client: vs.Client, Mount: "transit", Key: "audit-test", Name: "bulwark.audit/test", Create: true})
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := s.VerifierKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != s.KeyHash() || v.Name() != s.Name() {
		t.Fatal("signer and verifier disagree on the key name or hash")
	}
	signed, err := note.Sign(&note.Note{Text: "bulwark.audit/test\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		t.Fatalf("transit signature does not verify: %v", err)
	}
	// The transit key is not exportable: only the public half is readable.
	sec, err := vs.Client.Logical().Read("transit/export/signing-key/audit-test")
	if err == nil && sec != nil {
		t.Fatal("the private signing key could be exported")
	}
	if len(s.PublicKey()) != ed25519.PublicKeySize {
		t.Fatal("public key size")
	}
	// A second signer on the same key verifies the same way (restart).
	s2, err := vaultsign.New(ctx, vaultsign.Params{Client: vs.Client, Mount: "transit", Key: "audit-test", Name: "bulwark.audit/test"})
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := s2.VerifierKey(); k2 != vkey {
		t.Fatal("restart changed the verifier key")
	}
}

func TestNew_RejectsMissingAndNonEd25519Keys(t *testing.T) {
	vs := platformtest.Vault(t)
	ctx := context.Background()
	if _, err := vaultsign.New(ctx, vaultsign.Params{Client: vs.Client, Mount: "transit", Key: "absent", Name: "n"}); !errors.Is(err, vaultsign.ErrKey) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := vs.Client.Logical().Write("transit/keys/aes", map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vaultsign.New(ctx, vaultsign.Params{Client: vs.Client, Mount: "transit", Key: "aes", Name: "n"}); !errors.Is(err, vaultsign.ErrKey) {
		t.Fatalf("aes key: %v", err)
	}
}
