package keys

import (
	"context"
	"fmt"

	vault "github.com/hashicorp/vault/api"
)

// VaultStore reads KV v2 secrets with the router's own Vault client.
type VaultStore struct {
	kv *vault.KVv2
}

// NewVaultStore reads from the KV v2 engine mounted at mount ("secret" when empty).
func NewVaultStore(c *vault.Client, mount string) *VaultStore {
	if mount == "" {
		mount = "secret"
	}
	return &VaultStore{kv: c.KVv2(mount)}
}

// CurrentVersion reads the secret's metadata.
func (v *VaultStore) CurrentVersion(ctx context.Context, path string) (int, error) {
	m, err := v.kv.GetMetadata(ctx, path)
	if err != nil {
		return 0, fmt.Errorf("read key metadata: %w", err)
	}
	return m.CurrentVersion, nil
}

// Read reads the secret's current version. Only string fields are kept.
func (v *VaultStore) Read(ctx context.Context, path string) (map[string]string, int, error) {
	s, err := v.kv.Get(ctx, path)
	if err != nil {
		return nil, 0, fmt.Errorf("read key: %w", err)
	}
	out := make(map[string]string, len(s.Data))
	for k, val := range s.Data {
		if str, ok := val.(string); ok {
			out[k] = str
		}
	}
	ver := 0
	if s.VersionMetadata != nil {
		ver = s.VersionMetadata.Version
	}
	return out, ver, nil
}
