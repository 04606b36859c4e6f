// Package payloadhash computes the keyed hashes of request and response payloads that
// audit records hold instead of the payloads. A plain SHA-256 of a short payload (an
// e-mail address, a card number) can be reversed by guessing; HMAC-SHA256 with a key kept
// in Vault cannot, yet equal payloads still hash equal for whoever holds the key.
//
// The gateway loads the key with LoadFromVault and calls Sum for each payload.
package payloadhash

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
)

// MinKeySize is the shortest key accepted, in bytes.
const MinKeySize = 32

// ErrKey reports a missing or too short key.
var ErrKey = errors.New("payload hash key unusable")

// Hasher computes HMAC-SHA256 with a key that can be replaced at run time. It is safe for
// concurrent use.
type Hasher struct {
	mu   sync.RWMutex
	key  []byte
	pool *sync.Pool
}

// New returns a Hasher with key, which must be at least MinKeySize bytes.
func New(key []byte) (*Hasher, error) {
	h := &Hasher{}
	if err := h.SetKey(key); err != nil {
		return nil, err
	}
	return h, nil
}

// SetKey replaces the key, e.g. after a rotation in Vault.
func (h *Hasher) SetKey(key []byte) error {
	if len(key) < MinKeySize {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeySize)
	}
	k := append([]byte(nil), key...)
	pool := &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}
	h.mu.Lock()
	h.key, h.pool = k, pool
	h.mu.Unlock()
	return nil
}

// Sum returns the lower-case hex HMAC-SHA256 of payload.
func (h *Hasher) Sum(payload []byte) string {
	h.mu.RLock()
	pool := h.pool
	h.mu.RUnlock()
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	var buf [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(buf[:0]))
	pool.Put(m)
	return out
}

// SumReader hashes a payload read from r.
func (h *Hasher) SumReader(r io.Reader) (string, error) {
	h.mu.RLock()
	key := h.key
	h.mu.RUnlock()
	m := hmac.New(sha256.New, key)
	if _, err := io.Copy(m, r); err != nil {
		return "", fmt.Errorf("hash payload: %w", err)
	}
	return hex.EncodeToString(m.Sum(nil)), nil
}

// Equal reports whether sum is the HMAC of payload, in constant time.
func (h *Hasher) Equal(payload []byte, sum string) bool {
	return hmac.Equal([]byte(h.Sum(payload)), []byte(strings.ToLower(sum)))
}

// LogValue prints nothing of the key.
func (h *Hasher) LogValue() slog.Value { return slog.StringValue("hmac-sha256(key=***)") }

// VaultParams locates the key in a Vault KV v2 secret; the field holds the key in
// standard base64.
type VaultParams struct {
	Client *vault.Client
	// Mount is the KV v2 mount, e.g. "secret".
	Mount string
	// Path is the secret path under the mount, e.g. "bulwark/prod/audit/payload-hmac".
	Path string
	// Field is the field holding the base64 key; empty means "key".
	Field string
	// Create writes a new random key when the secret does not exist.
	Create bool
}

// LoadFromVault reads the key from Vault KV v2 and returns a Hasher with it.
func LoadFromVault(ctx context.Context, p VaultParams) (*Hasher, error) {
	key, err := ReadKey(ctx, p)
	if err != nil {
		return nil, err
	}
	return New(key)
}

// ReadKey reads (or, with Create, makes) the key; use it to refresh a Hasher with SetKey.
func ReadKey(ctx context.Context, p VaultParams) ([]byte, error) {
	if p.Client == nil || p.Mount == "" || p.Path == "" {
		return nil, fmt.Errorf("%w: Vault client, mount and path are required", ErrKey)
	}
	if p.Field == "" {
		p.Field = "key"
	}
	kv := p.Client.KVv2(p.Mount)
	sec, err := kv.Get(ctx, p.Path)
	if errors.Is(err, vault.ErrSecretNotFound) && p.Create {
		raw := make([]byte, MinKeySize)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("%w: generate: %v", ErrKey, err)
		}
		// check-and-set 0: only create; a concurrent creator wins and we read its key.
		if _, err := kv.Put(ctx, p.Path, map[string]any{p.Field: base64.StdEncoding.EncodeToString(raw)}, vault.WithCheckAndSet(0)); err != nil {
			sec, err = kv.Get(ctx, p.Path)
			if err != nil {
				return nil, fmt.Errorf("%w: read after create: %v", ErrKey, err)
			}
		} else {
			return raw, nil
		}
	} else if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrKey, err)
	}
	s, _ := sec.Data[p.Field].(string)
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: field is not base64", ErrKey)
	}
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeySize)
	}
	return key, nil
}
