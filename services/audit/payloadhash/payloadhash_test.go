package payloadhash_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func TestSum_IsKeyedHMACSHA256(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	h, err := payloadhash.New(key)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("alice@example.com"))
	if got, want := h.Sum([]byte("alice@example.com")), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("Sum = %s, want %s", got, want)
	}
	plain := sha256.Sum256([]byte("alice@example.com"))
	if h.Sum([]byte("alice@example.com")) == hex.EncodeToString(plain[:]) {
		t.Fatal("Sum is an unkeyed hash")
	}
	r, _ := h.SumReader(strings.NewReader("alice@example.com"))
	if !h.Equal([]byte("alice@example.com"), r) || h.Equal([]byte("bob"), r) {
		t.Fatal("SumReader/Equal disagree with Sum")
	}
	h2, _ := payloadhash.New(bytes.Repeat([]byte{2}, 32))
	if h2.Sum([]byte("x")) == h.Sum([]byte("x")) {
		t.Fatal("different keys give equal sums")
	}
}

func TestNew_RejectsShortKeys(t *testing.T) {
	if _, err := payloadhash.New(make([]byte, 16)); !errors.Is(err, payloadhash.ErrKey) {
		t.Fatalf("short key accepted: %v", err)
	}
}

func TestLoadFromVault_CreatesOnceThenReadsTheSameKey(t *testing.T) {
	vs := platformtest.Vault(t)
	ctx := context.Background()
	p := payloadhash.VaultParams{Client: vs.Client, Mount: "secret", Path: "bulwark/test/audit/payload-hmac", Create: true}
	h1, err := payloadhash.LoadFromVault(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := payloadhash.LoadFromVault(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if h1.Sum([]byte("payload")) != h2.Sum([]byte("payload")) {
		t.Fatal("second load read a different key")
	}
	p.Create, p.Path = false, "bulwark/test/audit/absent"
	if _, err := payloadhash.LoadFromVault(ctx, p); !errors.Is(err, payloadhash.ErrKey) {
		t.Fatalf("missing key: %v", err)
	}
}

func BenchmarkSum_1KiB(b *testing.B) {
	h, _ := payloadhash.New(bytes.Repeat([]byte{1}, 32))
	p := bytes.Repeat([]byte("x"), 1024)
	b.SetBytes(1024)
	for b.Loop() {
		h.Sum(p)
	}
}
