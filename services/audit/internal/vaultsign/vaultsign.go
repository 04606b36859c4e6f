// Package vaultsign signs checkpoints with an Ed25519 key held in Vault's transit engine.
// The private key never leaves Vault: Sign sends the message to transit/sign and returns
// the signature; the verifier key is built from the transit public key.
package vaultsign

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
)

// ErrKey reports a transit key that is missing or not Ed25519.
var ErrKey = errors.New("transit signing key unusable")

// ErrSign reports a failed transit signature.
var ErrSign = errors.New("transit sign failed")

// Params configures a Signer.
type Params struct {
	// Client is an authenticated Vault client.
	Client *vault.Client
	// Mount is the transit mount path, e.g. "transit".
	Mount string
	// Key is the transit key name.
	Key string
	// Name is the signed-note key name, usually the log origin.
	Name string
	// Create makes the key (type ed25519, not exportable) when it does not exist.
	Create bool
	// Timeout bounds each transit call; 0 means 5 s.
	Timeout time.Duration
	// Logger receives nothing secret.
	Logger *slog.Logger
}

// Signer is a note.Signer backed by Vault transit.
type Signer struct {
	p       Params
	pub     ed25519.PublicKey
	version int
	hash    uint32
}

var _ note.Signer = (*Signer)(nil)

// New reads the transit key's latest version and public key, creating the key if asked.
func New(ctx context.Context, p Params) (*Signer, error) {
	switch {
	case p.Client == nil:
		return nil, errors.New("vaultsign: nil Vault client")
	case p.Mount == "" || p.Key == "":
		return nil, errors.New("vaultsign: mount and key are required")
	case p.Name == "" || strings.ContainsAny(p.Name, "+ \n"):
		return nil, errors.New("vaultsign: note key name must be non-empty without '+', spaces or newlines")
	}
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Signer{p: p}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	path := p.Mount + "/keys/" + p.Key
	sec, err := p.Client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%w: read key: %v", ErrKey, err)
	}
	if sec == nil && p.Create {
		if _, err := p.Client.Logical().WriteWithContext(ctx, path, map[string]any{"type": "ed25519", "exportable": false}); err != nil {
			return nil, fmt.Errorf("%w: create key: %v", ErrKey, err)
		}
		p.Logger.InfoContext(ctx, "created transit signing key", "mount", p.Mount, "key", p.Key)
		sec, err = p.Client.Logical().ReadWithContext(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("%w: read key: %v", ErrKey, err)
		}
	}
	if sec == nil {
		return nil, fmt.Errorf("%w: key %q not found", ErrKey, p.Key)
	}
	if typ, _ := sec.Data["type"].(string); typ != "ed25519" {
		return nil, fmt.Errorf("%w: key type %q, want ed25519", ErrKey, typ)
	}
	latest, err := intOf(sec.Data["latest_version"])
	if err != nil {
		return nil, fmt.Errorf("%w: latest_version: %v", ErrKey, err)
	}
	keys, _ := sec.Data["keys"].(map[string]any)
	entry, _ := keys[strconv.Itoa(latest)].(map[string]any)
	pubB64, _ := entry["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key of version %d unreadable", ErrKey, latest)
	}
	s.pub = ed25519.PublicKey(pub)
	s.version = latest
	s.hash = noteKeyHash(p.Name, append([]byte{1}, pub...))
	return s, nil
}

// noteKeyHash is the signed-note key hash: the first four bytes of
// SHA-256(name || "\n" || 0x01 || public key).
func noteKeyHash(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func intOf(v any) (int, error) {
	switch n := v.(type) {
	case float64:
		return int(n), nil
	case int:
		return n, nil
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		return int(i), err
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

// Name is the signed-note key name.
func (s *Signer) Name() string { return s.p.Name }

// KeyHash is the signed-note key hash.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Sign signs msg with the transit key version read at construction.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.p.Timeout)
	defer cancel()
	sec, err := s.p.Client.Logical().WriteWithContext(ctx, s.p.Mount+"/sign/"+s.p.Key, map[string]any{
		"input":       base64.StdEncoding.EncodeToString(msg),
		"key_version": s.version,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSign, err)
	}
	if sec == nil {
		return nil, fmt.Errorf("%w: empty response", ErrSign)
	}
	sigStr, _ := sec.Data["signature"].(string)
	prefix := "vault:v" + strconv.Itoa(s.version) + ":"
	if !strings.HasPrefix(sigStr, prefix) {
		return nil, fmt.Errorf("%w: unexpected signature format", ErrSign)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sigStr, prefix))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: bad signature encoding", ErrSign)
	}
	// A signature that does not verify must never be published.
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("%w: signature does not verify with the public key", ErrSign)
	}
	return sig, nil
}

// PublicKey returns the Ed25519 public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// VerifierKey returns the signed-note verifier key "<name>+<hash>+<base64>".
func (s *Signer) VerifierKey() (string, error) {
	return note.NewEd25519VerifierKey(s.p.Name, s.pub)
}

// PublicKeyPEM returns the public key as a PKIX PEM block.
func (s *Signer) PublicKeyPEM() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(s.pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// LogValue names the key, never anything secret.
func (s *Signer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("mount", s.p.Mount), slog.String("key", s.p.Key),
		slog.Int("version", s.version), slog.String("name", s.p.Name))
}
