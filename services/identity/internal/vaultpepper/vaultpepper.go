// Package vaultpepper reads the pepper that keys the HMAC of API keys from Vault
// KV v2, creating it on first start when allowed (development installs).
package vaultpepper

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"

	vault "github.com/hashicorp/vault/api"
)

// Params locates the pepper.
type Params struct {
	Client *vault.Client
	// Mount of the KV v2 engine; default "secret".
	Mount string
	// Path under the mount; default "bulwark/identity/pepper".
	Path string
	// CreateIfMissing writes a fresh random pepper when none exists (check-and-set
	// 0, so concurrent replicas agree on one).
	CreateIfMissing bool
	Logger          *slog.Logger
}

// ErrMissing reports that no pepper exists and creating one was not allowed.
var ErrMissing = errors.New("vaultpepper: no pepper in Vault")

const field = "pepper"

// Load returns the pepper (at least 32 bytes).
func Load(ctx context.Context, p Params) ([]byte, error) {
	if p.Client == nil || p.Logger == nil {
		return nil, errors.New("vaultpepper: Client and Logger are required")
	}
	if p.Mount == "" {
		p.Mount = "secret"
	}
	if p.Path == "" {
		p.Path = "bulwark/identity/pepper"
	}
	kv := p.Client.KVv2(p.Mount)
	for attempt := 0; attempt < 2; attempt++ {
		s, err := kv.Get(ctx, p.Path)
		switch {
		case err == nil:
			return decode(s)
		case !errors.Is(err, vault.ErrSecretNotFound):
			return nil, fmt.Errorf("vaultpepper: read %s/%s: %w", p.Mount, p.Path, err)
		case !p.CreateIfMissing:
			return nil, ErrMissing
		}
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return nil, fmt.Errorf("vaultpepper: randomness: %w", err)
		}
		_, err = kv.Put(ctx, p.Path, map[string]any{field: base64.StdEncoding.EncodeToString(fresh)}, vault.WithCheckAndSet(0))
		if err == nil {
			p.Logger.WarnContext(ctx, "created a new API key pepper in Vault", "mount", p.Mount, "path", p.Path)
			return fresh, nil
		}
		// Another replica created it first: read theirs.
		p.Logger.InfoContext(ctx, "pepper creation lost a race; reading the stored one")
	}
	return nil, fmt.Errorf("vaultpepper: could not read or create the pepper at %s/%s", p.Mount, p.Path)
}

func decode(s *vault.KVSecret) ([]byte, error) {
	raw, ok := s.Data[field].(string)
	if !ok {
		return nil, fmt.Errorf("vaultpepper: secret has no %q field", field)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) < 32 {
		return nil, errors.New("vaultpepper: pepper must be base64 of at least 32 bytes")
	}
	return b, nil
}
