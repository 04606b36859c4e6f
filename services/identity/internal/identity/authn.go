package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
)

// errAuth is the one answer every failed authentication gets, so that callers
// cannot tell an unknown key from a wrong secret or a revoked key.
var errAuth = fmt.Errorf("invalid credential: %w", ErrUnauthenticated)

// Authenticate turns an API key or an OIDC JWT into a principal. env, when set,
// must be the key's environment (and one the principal may act in).
func (s *Service) Authenticate(ctx context.Context, credential, env string) (*identityv1.AuthenticateResponse, error) {
	switch {
	case credential == "":
		return nil, fmt.Errorf("no credential: %w", ErrUnauthenticated)
	case LooksLikeKey(credential):
		return s.authenticateKey(ctx, credential, env)
	case strings.Count(credential, ".") == 2 && s.verifier != nil:
		return s.authenticateToken(ctx, credential, env)
	default:
		return nil, errAuth
	}
}

func (s *Service) authenticateKey(ctx context.Context, credential, env string) (*identityv1.AuthenticateResponse, error) {
	keyEnv, id, ok := ParseKey(credential)
	mac := s.keyHMAC(credential) // computed for every attempt, so timing does not tell a bad format from a bad secret
	if !ok {
		return nil, errAuth
	}
	rec, err := s.cachedKey(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, errAuth
		}
		return nil, fmt.Errorf("authenticate: %w", ErrUnavailable)
	}
	if !hmac.Equal([]byte(mac), []byte(rec.HMAC)) {
		return nil, errAuth
	}
	m := rec.Meta
	now := s.now()
	switch {
	case keyEnv != m.Environment, env != "" && env != m.Environment:
		s.log.InfoContext(ctx, "api key refused: other environment", "api_key_id", id, "environment", env)
		return nil, errAuth
	case m.RevokeTime != nil:
		s.log.InfoContext(ctx, "api key refused: revoked", "api_key_id", id)
		return nil, errAuth
	case m.ExpireTime != nil && !now.Before(m.ExpireTime.AsTime()):
		s.log.InfoContext(ctx, "api key refused: expired", "api_key_id", id)
		return nil, errAuth
	}
	p, err := s.GetPrincipal(ctx, m.PrincipalId)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, errAuth
		}
		return nil, fmt.Errorf("authenticate: %w", ErrUnavailable)
	}
	if p.Disabled || !allowedIn(p, m.Environment) {
		s.log.InfoContext(ctx, "api key refused: owner disabled or not in environment", "api_key_id", id)
		return nil, errAuth
	}
	s.touchKey(ctx, id)
	method := identityv1.AuthMethod_AUTH_METHOD_API_KEY
	if rec.Bootstrap {
		method = identityv1.AuthMethod_AUTH_METHOD_BOOTSTRAP
	}
	return &identityv1.AuthenticateResponse{
		Principal: p, Method: method, ApiKeyId: id, Environment: m.Environment,
		ExpireTime: m.ExpireTime, Scopes: m.Scopes,
	}, nil
}

func (s *Service) authenticateToken(ctx context.Context, token, env string) (*identityv1.AuthenticateResponse, error) {
	claims, err := s.verifier.Verify(ctx, token)
	if err != nil {
		s.log.InfoContext(ctx, "token refused", "err", err)
		return nil, errAuth
	}
	p, err := s.oidcPrincipal(ctx, claims)
	if err != nil {
		return nil, err
	}
	if p.Disabled || (env != "" && !allowedIn(p, env)) {
		return nil, errAuth
	}
	resp := &identityv1.AuthenticateResponse{Principal: p, Method: identityv1.AuthMethod_AUTH_METHOD_OIDC, Environment: env, Mfa: claims.MFA}
	if !claims.Expiry.IsZero() {
		resp.ExpireTime = timestamppb.New(claims.Expiry)
	}
	return resp, nil
}

func oidcIndexKey(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return "oidc." + hex.EncodeToString(sum[:20])
}

// claimOIDCSubject links an "issuer|sub" to a principal, refusing one that is
// already linked to another principal.
func (s *Service) claimOIDCSubject(ctx context.Context, subject, id string) error {
	key := oidcIndexKey(subject)
	if _, err := s.store.Create(ctx, key, []byte(id)); err != nil {
		if !errors.Is(err, ErrExists) {
			return fmt.Errorf("link oidc subject: %w", err)
		}
		e, err := s.store.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("link oidc subject: %w", err)
		}
		if string(e.Value) != id {
			return fmt.Errorf("oidc subject already linked to another principal: %w", ErrExists)
		}
	}
	return nil
}

// oidcPrincipal finds the principal linked to the token's subject, creating a
// person on first login. When the issuer maps roles, the token's roles replace
// the stored ones, so the identity provider stays the source of truth.
func (s *Service) oidcPrincipal(ctx context.Context, c Claims) (*identityv1.Principal, error) {
	subject := c.Issuer + "|" + c.Subject
	actor := Actor{PrincipalID: "oidc:" + c.Issuer}
	roles, err := s.allRoles(ctx)
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", ErrUnavailable)
	}
	var claimRoles []string
	for _, r := range c.Roles {
		if _, ok := roles[r]; ok && r != authz.RoleSystem {
			claimRoles = append(claimRoles, r)
		}
	}
	slices.Sort(claimRoles)
	claimRoles = slices.Compact(claimRoles)

	e, err := s.store.Get(ctx, oidcIndexKey(subject))
	switch {
	case errors.Is(err, ErrNotFound):
		p := &identityv1.Principal{
			Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, DisplayName: c.Name, Email: c.Email,
			Roles: claimRoles, Environments: slices.Clone(c.Environments), OidcSubject: subject,
		}
		created, err := s.CreatePrincipal(ctx, actor, p)
		if errors.Is(err, ErrExists) {
			// Another replica provisioned the same person concurrently.
			return s.oidcPrincipal(ctx, c)
		}
		if err != nil {
			return nil, err
		}
		s.log.InfoContext(ctx, "provisioned principal on first OIDC login", "principal_id", created.Id)
		return created, nil
	case err != nil:
		return nil, fmt.Errorf("authenticate: %w", ErrUnavailable)
	}
	p, err := s.GetPrincipal(ctx, string(e.Value))
	if err != nil {
		return nil, errAuth
	}
	if c.Roles != nil && !slices.Equal(p.Roles, claimRoles) {
		upd := proto.CloneOf(p)
		upd.Roles = claimRoles
		p, err = s.UpdatePrincipal(ctx, actor, upd, []string{"roles"})
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// BootstrapParams describes the first admin of a fresh install.
type BootstrapParams struct {
	// PrincipalID of the admin; default "svc_bootstrap_admin".
	PrincipalID string
	// Roles of the principal when it is created; default ["admin"]. Use
	// ["system"] for a service's internal principal (e.g. an all-in-one gateway).
	Roles []string
	// Environment the admin key works in; default the first environment.
	Environment string
	// Key, when set, is used as the admin key (BULWARK_BOOTSTRAP_ADMIN_KEY); it must
	// be a well-formed key for Environment. When empty a key is generated.
	Key string
}

// BootstrapResult is what Bootstrap did.
type BootstrapResult struct {
	Principal *identityv1.Principal
	// Secret is the generated key, set only when a key was created and none was supplied.
	Secret string
	// KeyID of the admin key.
	KeyID string
	// Created is false when the admin and key already existed.
	Created bool
}

// Bootstrap creates the first admin and its key. It is idempotent: run again, it
// leaves an existing admin and an existing supplied key as they are.
func (s *Service) Bootstrap(ctx context.Context, p BootstrapParams) (BootstrapResult, error) {
	if p.PrincipalID == "" {
		p.PrincipalID = "svc_bootstrap_admin"
	}
	if p.Environment == "" {
		p.Environment = s.envs[0]
		if p.Key != "" {
			if env, _, ok := ParseKey(p.Key); ok {
				p.Environment = env
			}
		}
	}
	if !s.knownEnv(p.Environment) {
		return BootstrapResult{}, fmt.Errorf("bootstrap environment %q does not exist: %w", p.Environment, ErrInvalid)
	}
	var keyID string
	if p.Key != "" {
		env, id, ok := ParseKey(p.Key)
		if !ok || env != p.Environment {
			return BootstrapResult{}, fmt.Errorf("bootstrap key must look like bk_%s_<26 char id>_<secret>: %w", p.Environment, ErrInvalid)
		}
		keyID = id
	}
	actor := Actor{PrincipalID: "bootstrap"}
	roles := p.Roles
	if len(roles) == 0 {
		roles = []string{authz.RoleAdmin}
	}
	res := BootstrapResult{}
	admin, err := s.GetPrincipal(ctx, p.PrincipalID)
	switch {
	case errors.Is(err, ErrNotFound):
		admin, err = s.CreatePrincipal(ctx, actor, &identityv1.Principal{
			Id: p.PrincipalID, Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, DisplayName: "Bootstrap principal",
			Roles: roles, Environments: []string{"*"},
		})
		if err != nil && !errors.Is(err, ErrExists) {
			return BootstrapResult{}, err
		}
		if errors.Is(err, ErrExists) {
			if admin, err = s.GetPrincipal(ctx, p.PrincipalID); err != nil {
				return BootstrapResult{}, err
			}
		} else {
			res.Created = true
		}
	case err != nil:
		return BootstrapResult{}, err
	}
	res.Principal = admin
	if keyID != "" {
		rec, _, err := s.getKey(ctx, keyID)
		if err == nil {
			if !hmac.Equal([]byte(rec.HMAC), []byte(s.keyHMAC(p.Key))) || rec.Meta.PrincipalId != admin.Id {
				return BootstrapResult{}, fmt.Errorf("a different key with the bootstrap key's id exists: %w", ErrExists)
			}
			res.KeyID = keyID
			return res, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return BootstrapResult{}, err
		}
	} else if !res.Created {
		// The admin exists and no key was supplied: its key was shown when it was made.
		return res, nil
	}
	meta, secret, err := s.issueKey(ctx, actor, admin.Id, p.Environment, "bootstrap", nil, 0, p.Key)
	if err != nil {
		return BootstrapResult{}, err
	}
	if _, err := s.modifyKey(ctx, meta.Id, func(r *keyRecord) error { r.Bootstrap = true; return nil }); err != nil {
		return BootstrapResult{}, err
	}
	s.audit(ctx, adminAction{actor: actor, action: "identity.apikey.create", target: meta.Id, after: objectHash(meta),
		environment: p.Environment, details: map[string]string{"principal_id": admin.Id, "bootstrap": "true"}})
	res.KeyID, res.Created = meta.Id, true
	if p.Key == "" {
		res.Secret = secret
	}
	return res, nil
}
