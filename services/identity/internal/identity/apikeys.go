package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// API keys look like bk_<env>_<id>_<secret>: the environment is readable, the id
// is a lowercase ULID, and the secret is 32 random bytes in lowercase base32.
var keyPattern = regexp.MustCompile(`^bk_([a-z][a-z0-9]{0,15})_([0-9a-z]{26})_([A-Za-z0-9]{32,128})$`)

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// GenerateKey returns a fresh key string for env, e.g. for BULWARK_BOOTSTRAP_ADMIN_KEY.
func GenerateKey(env string) string {
	return "bk_" + env + "_" + newID() + "_" + strings.ToLower(secretEncoding.EncodeToString(randomBytes(32)))
}

// ParseKey splits a key into environment and id. ok is false for anything that is
// not a well-formed Bulwark key (the same language as keyPattern, without the
// cost of a regular expression on the hot path).
func ParseKey(key string) (env, id string, ok bool) {
	rest, found := strings.CutPrefix(key, "bk_")
	if !found {
		return "", "", false
	}
	i := strings.IndexByte(rest, '_')
	if i < 1 || i > 16 || !isLower(rest[0]) {
		return "", "", false
	}
	env, rest = rest[:i], rest[i+1:]
	for j := 1; j < len(env); j++ {
		if !isLower(env[j]) && !isDigit(env[j]) {
			return "", "", false
		}
	}
	if len(rest) < 26+1+32 || len(rest) > 26+1+128 || rest[26] != '_' {
		return "", "", false
	}
	id, secret := rest[:26], rest[27:]
	for j := 0; j < len(id); j++ {
		if !isLower(id[j]) && !isDigit(id[j]) {
			return "", "", false
		}
	}
	for j := 0; j < len(secret); j++ {
		if c := secret[j]; !isLower(c) && !isDigit(c) && (c < 'A' || c > 'Z') {
			return "", "", false
		}
	}
	return env, id, true
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LooksLikeKey reports whether a credential is meant as a Bulwark API key.
func LooksLikeKey(credential string) bool { return strings.HasPrefix(credential, "bk_") }

// keyRecord is what is stored for a key: metadata and the keyed hash, never the key.
type keyRecord struct {
	Meta *identityv1.ApiKey
	HMAC string
	// Bootstrap marks the install's first admin key.
	Bootstrap bool
}

type keyRecordJSON struct {
	Meta      json.RawMessage `json:"meta"`
	HMAC      string          `json:"hmac"`
	Bootstrap bool            `json:"bootstrap,omitempty"`
}

func (r *keyRecord) encode() []byte {
	b, _ := json.Marshal(keyRecordJSON{Meta: encode(r.Meta), HMAC: r.HMAC, Bootstrap: r.Bootstrap})
	return b
}

func decodeKeyRecord(b []byte) (*keyRecord, error) {
	var j keyRecordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("decode key record: %w", err)
	}
	meta, err := decode(j.Meta, &identityv1.ApiKey{})
	if err != nil {
		return nil, err
	}
	return &keyRecord{Meta: meta, HMAC: j.HMAC, Bootstrap: j.Bootstrap}, nil
}

func keyKey(id string) string { return "apikey." + id }

// keyHMAC is hex HMAC-SHA256 of the whole key with the pepper.
func (s *Service) keyHMAC(key string) string {
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte("bulwark-apikey-v1:"))
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Service) getKey(ctx context.Context, id string) (*keyRecord, uint64, error) {
	e, err := s.store.Get(ctx, keyKey(id))
	if err != nil {
		return nil, 0, notFoundAs(err, "api key")
	}
	r, err := decodeKeyRecord(e.Value)
	return r, e.Revision, err
}

func (s *Service) cachedKey(ctx context.Context, id string) (*keyRecord, error) {
	if r, _, ok := s.keys.get(id); ok {
		return r, nil
	}
	_, ver, _ := s.keys.get(id)
	r, _, err := s.getKey(ctx, id)
	if err != nil {
		return nil, err
	}
	s.keys.put(ver, id, r)
	return r, nil
}

var scopePattern = regexp.MustCompile(`^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$`)

// CreateApiKey issues a key for a principal in one environment and returns the
// secret, which is never stored.
func (s *Service) CreateApiKey(ctx context.Context, actor Actor, principalID, env, name string, scopes []string, ttl time.Duration) (*identityv1.ApiKey, string, error) {
	if !s.knownEnv(env) {
		return nil, "", fmt.Errorf("environment %q does not exist: %w", env, ErrInvalid)
	}
	if ttl < 0 || len(name) > 200 {
		return nil, "", fmt.Errorf("ttl must not be negative and name at most 200 characters: %w", ErrInvalid)
	}
	for _, sc := range scopes {
		if !scopePattern.MatchString(sc) {
			return nil, "", fmt.Errorf("scope %q is not an action name or pattern: %w", sc, ErrInvalid)
		}
	}
	owner, err := s.GetPrincipal(ctx, principalID)
	if err != nil {
		return nil, "", err
	}
	if owner.Disabled {
		return nil, "", fmt.Errorf("principal %q is disabled: %w", principalID, ErrFailedPrecondition)
	}
	if !allowedIn(owner, env) {
		return nil, "", fmt.Errorf("principal %q may not act in %q: %w", principalID, env, ErrFailedPrecondition)
	}
	meta, secret, err := s.issueKey(ctx, actor, owner.Id, env, name, scopes, ttl, "")
	if err != nil {
		return nil, "", err
	}
	s.audit(ctx, adminAction{actor: actor, action: "identity.apikey.create", target: meta.Id, after: objectHash(meta),
		environment: env, details: map[string]string{"principal_id": owner.Id, "environment": env}})
	return meta, secret, nil
}

func (s *Service) issueKey(ctx context.Context, actor Actor, owner, env, name string, scopes []string, ttl time.Duration, key string) (*identityv1.ApiKey, string, error) {
	if key == "" {
		key = GenerateKey(env)
	}
	_, id, ok := ParseKey(key)
	if !ok {
		return nil, "", fmt.Errorf("malformed key: %w", ErrInvalid)
	}
	now := s.now()
	meta := &identityv1.ApiKey{
		Id: id, PrincipalId: owner, Environment: env, Name: name, Scopes: slices.Clone(scopes),
		Prefix: "bk_" + env + "_" + id[:10], CreateTime: timestamppb.New(now), CreatedBy: actor.PrincipalID,
	}
	if ttl > 0 {
		meta.ExpireTime = timestamppb.New(now.Add(ttl))
	}
	rec := &keyRecord{Meta: meta, HMAC: s.keyHMAC(key)}
	if _, err := s.store.Create(ctx, keyKey(id), rec.encode()); err != nil {
		return nil, "", fmt.Errorf("store api key: %w", err)
	}
	return meta, key, nil
}

// ListApiKeys pages through key metadata in id (creation) order.
func (s *Service) ListApiKeys(ctx context.Context, principalID, env string, includeRevoked bool, pageSize int32, pageToken string) ([]*identityv1.ApiKey, string, error) {
	size := pageLimit(pageSize, 100, 1000)
	keys, err := s.store.Keys(ctx, "apikey")
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, "apikey."))
	}
	sort.Strings(ids)
	var out []*identityv1.ApiKey
	for _, id := range ids {
		if pageToken != "" && id <= pageToken {
			continue
		}
		rec, err := s.cachedKey(ctx, id)
		if err != nil {
			continue
		}
		m := rec.Meta
		if (principalID != "" && m.PrincipalId != principalID) || (env != "" && m.Environment != env) || (!includeRevoked && m.RevokeTime != nil) {
			continue
		}
		if len(out) == size {
			return out, out[len(out)-1].Id, nil
		}
		out = append(out, m)
	}
	return out, "", nil
}

// RevokeApiKey stops a key at once.
func (s *Service) RevokeApiKey(ctx context.Context, actor Actor, id, reason string) (*identityv1.ApiKey, error) {
	var before string
	meta, err := s.modifyKey(ctx, id, func(r *keyRecord) error {
		before = objectHash(r.Meta)
		if r.Meta.RevokeTime == nil {
			r.Meta.RevokeTime = timestamppb.New(s.now())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.audit(ctx, adminAction{actor: actor, action: "identity.apikey.revoke", target: id, before: before, after: objectHash(meta),
		reason: reason, environment: meta.Environment})
	s.changed(ctx, "api_key", id, meta.Environment, "")
	return meta, nil
}

// RotateApiKey issues a successor key; the old key keeps working for grace.
func (s *Service) RotateApiKey(ctx context.Context, actor Actor, id string, grace time.Duration) (*identityv1.ApiKey, *identityv1.ApiKey, string, error) {
	if grace < 0 {
		return nil, nil, "", fmt.Errorf("grace must not be negative: %w", ErrInvalid)
	}
	if grace == 0 {
		grace = s.grace
	}
	old, _, err := s.getKey(ctx, id)
	if err != nil {
		return nil, nil, "", err
	}
	m := old.Meta
	if m.RevokeTime != nil || m.RotatedTo != "" {
		return nil, nil, "", fmt.Errorf("key %q is revoked or already rotated: %w", id, ErrFailedPrecondition)
	}
	var ttl time.Duration
	if m.ExpireTime != nil && m.CreateTime != nil {
		ttl = m.ExpireTime.AsTime().Sub(m.CreateTime.AsTime())
	}
	newMeta, secret, err := s.issueKey(ctx, actor, m.PrincipalId, m.Environment, m.Name, m.Scopes, ttl, "")
	if err != nil {
		return nil, nil, "", err
	}
	before := objectHash(m)
	oldMeta, err := s.modifyKey(ctx, id, func(r *keyRecord) error {
		if r.Meta.RotatedTo != "" {
			return fmt.Errorf("key %q was rotated concurrently: %w", id, ErrConflict)
		}
		end := s.now().Add(grace)
		if r.Meta.ExpireTime == nil || r.Meta.ExpireTime.AsTime().After(end) {
			r.Meta.ExpireTime = timestamppb.New(end)
		}
		r.Meta.RotatedTo = newMeta.Id
		return nil
	})
	if err != nil {
		// The successor exists but the old key was not marked; revoke the successor so no orphan works.
		_, _ = s.modifyKey(context.WithoutCancel(ctx), newMeta.Id, func(r *keyRecord) error {
			r.Meta.RevokeTime = timestamppb.New(s.now())
			return nil
		})
		return nil, nil, "", err
	}
	s.audit(ctx, adminAction{actor: actor, action: "identity.apikey.rotate", target: id, before: before, after: objectHash(oldMeta),
		environment: m.Environment, details: map[string]string{"successor": newMeta.Id, "grace": grace.String()}})
	s.changed(ctx, "api_key", id, m.Environment, "")
	return oldMeta, newMeta, secret, nil
}

func (s *Service) modifyKey(ctx context.Context, id string, mutate func(*keyRecord) error) (*identityv1.ApiKey, error) {
	if !keyIDPattern.MatchString(id) {
		return nil, fmt.Errorf("api key: %w", ErrNotFound)
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pause(attempt)
		rec, rev, err := s.getKey(ctx, id)
		if err != nil {
			return nil, err
		}
		rec.Meta = proto.CloneOf(rec.Meta)
		if err := mutate(rec); err != nil {
			return nil, err
		}
		if _, err := s.store.Update(ctx, keyKey(id), rec.encode(), rev); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return nil, fmt.Errorf("store api key: %w", err)
		}
		s.keys.delete(id)
		return rec.Meta, nil
	}
	return nil, fmt.Errorf("api key %q: %w", id, ErrConflict)
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-z]{26}$`)

// touchKey records last use at most once per interval per key and replica. A
// failure is logged and never fails the authentication.
func (s *Service) touchKey(ctx context.Context, id string) {
	now := s.now()
	if v, ok := s.lastUse.Load(id); ok && now.Sub(v.(time.Time)) < s.lastUseIn {
		return
	}
	s.lastUse.Store(id, now)
	_, err := s.modifyKey(ctx, id, func(r *keyRecord) error {
		if r.Meta.LastUseTime != nil && now.Sub(r.Meta.LastUseTime.AsTime()) < s.lastUseIn {
			return errSkip
		}
		r.Meta.LastUseTime = timestamppb.New(now)
		return nil
	})
	if err != nil && !errors.Is(err, errSkip) {
		s.log.WarnContext(ctx, "api key last use not recorded", "api_key_id", id, "err", err)
	}
}

var errSkip = errors.New("skip")
