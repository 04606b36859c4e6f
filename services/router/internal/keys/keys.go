// Package keys hands provider API keys to the router. Keys live in Vault KV v2 at
// secret/bulwark/<env>/providers/<provider>; they are cached, and the cache
// re-checks the secret's current version after a short TTL so a rotated key is
// used without a restart. A key never appears in logs, errors or RPC answers.
package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrUnavailable is returned when no key can be read for a provider.
	ErrUnavailable = errors.New("provider key unavailable")
)

// DefaultField is the secret field that holds a provider's default key.
const DefaultField = "api_key"

// Key is a provider credential. It prints and logs masked.
type Key struct{ v string }

// NewKey wraps a credential.
func NewKey(v string) Key { return Key{v: v} }

// Reveal returns the credential for the one place that sends it: the provider request.
func (k Key) Reveal() string { return k.v }

// IsZero reports whether the key is empty.
func (k Key) IsZero() bool { return k.v == "" }

// String masks the key.
func (k Key) String() string { return "[REDACTED]" }

// GoString masks the key.
func (k Key) GoString() string { return "keys.Key{[REDACTED]}" }

// LogValue masks the key.
func (k Key) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Store reads KV v2 secrets. The Vault adapter implements it.
type Store interface {
	// CurrentVersion is the secret's current version (a metadata read).
	CurrentVersion(ctx context.Context, path string) (int, error)
	// Read returns the secret's fields and version.
	Read(ctx context.Context, path string) (map[string]string, int, error)
}

// Params configure a Source.
type Params struct {
	Store  Store
	Logger *slog.Logger
	// TTL is how long a cached secret is used before its version is checked again (15 s when 0).
	TTL time.Duration
	// PathPrefix is the KV path before "<env>/providers/<name>" ("bulwark/" when empty).
	PathPrefix string
	Now        func() time.Time
}

type entry struct {
	fields    map[string]string
	version   int
	checkedAt time.Time
	err       error
	mu        sync.Mutex // serialises refreshes of this path
}

// Source hands out keys from a cache in front of the Store.
type Source struct {
	p   Params
	mu  sync.Mutex
	ent map[string]*entry
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// New returns a Source.
func New(p Params) *Source {
	if p.TTL <= 0 {
		p.TTL = 15 * time.Second
	}
	if p.PathPrefix == "" {
		p.PathPrefix = "bulwark/"
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return &Source{p: p, ent: map[string]*entry{}}
}

// Path is the KV v2 path (under the mount) of a provider's keys in an environment.
func (s *Source) Path(env, provider string) string {
	return s.p.PathPrefix + env + "/providers/" + provider
}

// Key returns the named key ("" means the default field) of a provider in an environment.
func (s *Source) Key(ctx context.Context, env, provider, name string) (Key, error) {
	if !nameRE.MatchString(env) || !nameRE.MatchString(provider) || (name != "" && !nameRE.MatchString(name)) {
		return Key{}, fmt.Errorf("key for provider %s: bad environment or key name: %w", provider, ErrUnavailable)
	}
	if name == "" {
		name = DefaultField
	}
	fields, err := s.fields(ctx, s.Path(env, provider))
	if err != nil {
		return Key{}, fmt.Errorf("key for provider %s in %s: %w", provider, env, ErrUnavailable)
	}
	v := fields[name]
	if v == "" {
		return Key{}, fmt.Errorf("key %s for provider %s in %s missing: %w", name, provider, env, ErrUnavailable)
	}
	return NewKey(v), nil
}

// Available reports whether the default key of a provider can be read.
func (s *Source) Available(ctx context.Context, env, provider string) bool {
	_, err := s.Key(ctx, env, provider, "")
	return err == nil
}

func (s *Source) fields(ctx context.Context, path string) (map[string]string, error) {
	s.mu.Lock()
	e, ok := s.ent[path]
	if !ok {
		e = &entry{}
		s.ent[path] = e
	}
	s.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := s.p.Now()
	if e.fields != nil && now.Sub(e.checkedAt) < s.p.TTL {
		return e.fields, nil
	}
	if e.fields == nil && e.err != nil && now.Sub(e.checkedAt) < s.p.TTL/5 {
		return nil, e.err // do not hammer Vault for a path that just failed
	}
	if e.fields != nil {
		v, err := s.p.Store.CurrentVersion(ctx, path)
		if err != nil {
			// Keep serving the cached key: Vault being briefly unreachable must not fail traffic.
			s.p.Logger.WarnContext(ctx, "provider key version check failed; using cached key", "path", path, "err", err)
			e.checkedAt = now
			return e.fields, nil
		}
		if v == e.version {
			e.checkedAt = now
			return e.fields, nil
		}
	}
	fields, version, err := s.p.Store.Read(ctx, path)
	if err != nil || len(fields) == 0 {
		if err == nil {
			err = ErrUnavailable
		}
		if e.fields != nil {
			s.p.Logger.WarnContext(ctx, "provider key read failed; using cached key", "path", path, "err", err)
			e.checkedAt = now
			return e.fields, nil
		}
		e.err = err
		e.checkedAt = now
		s.p.Logger.WarnContext(ctx, "provider key unreadable", "path", path, "err", err)
		return nil, err
	}
	if e.fields != nil {
		s.p.Logger.InfoContext(ctx, "provider key rotated", "path", path, "version", version)
	}
	e.fields, e.version, e.checkedAt, e.err = fields, version, now, nil
	return fields, nil
}
