package vaultpepper_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/bulwarkhq/bulwark/services/identity/internal/vaultpepper"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func TestLoad_CreatesOnceThenReadsTheSamePepper(t *testing.T) {
	v := platformtest.Vault(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	if _, err := vaultpepper.Load(ctx, vaultpepper.Params{Client: v.Client, Logger: log}); !errors.Is(err, vaultpepper.ErrMissing) {
		t.Fatalf("missing pepper without create: %v", err)
	}
	first, err := vaultpepper.Load(ctx, vaultpepper.Params{Client: v.Client, Logger: log, CreateIfMissing: true})
	if err != nil || len(first) != 32 {
		t.Fatalf("create: %d bytes, %v", len(first), err)
	}
	second, err := vaultpepper.Load(ctx, vaultpepper.Params{Client: v.Client, Logger: log, CreateIfMissing: true})
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("second load differs or fails: %v", err)
	}
	s, err := v.Client.KVv2("secret").Get(ctx, "bulwark/identity/pepper")
	if err != nil || s.VersionMetadata.Version != 1 {
		t.Fatalf("pepper written more than once: %v %v", s, err)
	}
}
