// Package oidc verifies bearer JWTs from configured OpenID Connect issuers with
// github.com/coreos/go-oidc (JWKS fetched, cached and refetched when a token names
// an unknown key, so issuer key rotation needs no restart), checks audience and
// expiry with a bounded clock skew, and maps claims to roles and MFA.
package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

// IssuerConfig describes one trusted issuer.
type IssuerConfig struct {
	// Issuer is the issuer URL, exactly as in the tokens' "iss".
	Issuer string `json:"issuer"`
	// Audience the tokens must carry in "aud" (the client id).
	Audience string `json:"audience"`
	// JWKSURL, when set, skips discovery and fetches keys from here.
	JWKSURL string `json:"jwks_url"`
	// RolesClaim names the claim holding roles or groups; default "roles".
	RolesClaim string `json:"roles_claim"`
	// RoleMap maps claim values to Bulwark roles. Empty: claim values are role names.
	RoleMap map[string]string `json:"role_map"`
	// Environments granted to principals created on first login.
	Environments []string `json:"environments"`
	// MFAMethods are "amr" values that prove a second factor; default mfa, mca, otp, hwk, sc, sms, tel.
	MFAMethods []string `json:"mfa_amr"`
	// MFAACRValues are "acr" values that prove a second factor.
	MFAACRValues []string `json:"mfa_acr"`
}

// Params configures a Verifier.
type Params struct {
	Issuers []IssuerConfig
	// ClockSkew tolerated on exp, nbf and iat; default 60s.
	ClockSkew time.Duration
	// HTTPClient fetches discovery documents and JWKS; default http.DefaultClient.
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// Verifier implements identity.TokenVerifier.
type Verifier struct {
	issuers map[string]*issuer
	skew    time.Duration
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
}

var _ identity.TokenVerifier = (*Verifier)(nil)

type issuer struct {
	cfg      IssuerConfig
	mu       sync.Mutex
	verifier *gooidc.IDTokenVerifier
}

var defaultMFAMethods = []string{"mfa", "mca", "otp", "hwk", "sc", "sms", "tel"}

var signingAlgs = []string{
	gooidc.RS256, gooidc.RS384, gooidc.RS512, gooidc.ES256, gooidc.ES384, gooidc.ES512, gooidc.PS256, gooidc.PS384, gooidc.PS512, gooidc.EdDSA,
}

// New validates the issuers. Keys are fetched on first use, so an issuer that is
// down at start does not stop the service.
func New(p Params) (*Verifier, error) {
	if p.Logger == nil {
		return nil, errors.New("oidc: Logger is required")
	}
	v := &Verifier{issuers: map[string]*issuer{}, skew: p.ClockSkew, client: p.HTTPClient, now: p.Now, log: p.Logger}
	if v.skew <= 0 {
		v.skew = time.Minute
	}
	if v.client == nil {
		v.client = http.DefaultClient
	}
	if v.now == nil {
		v.now = time.Now
	}
	for _, c := range p.Issuers {
		if c.Issuer == "" || c.Audience == "" {
			return nil, errors.New("oidc: every issuer needs issuer and audience")
		}
		if c.RolesClaim == "" {
			c.RolesClaim = "roles"
		}
		if len(c.MFAMethods) == 0 {
			c.MFAMethods = defaultMFAMethods
		}
		v.issuers[c.Issuer] = &issuer{cfg: c}
	}
	return v, nil
}

func unauth(reason string) error {
	return fmt.Errorf("token %s: %w", reason, identity.ErrUnauthenticated)
}

// Verify implements identity.TokenVerifier.
func (v *Verifier) Verify(ctx context.Context, token string) (identity.Claims, error) {
	iss, err := unverifiedIssuer(token)
	if err != nil {
		return identity.Claims{}, unauth("malformed")
	}
	is, ok := v.issuers[iss]
	if !ok {
		return identity.Claims{}, unauth("from an unknown issuer")
	}
	verifier, err := is.get(v.clientContext(ctx), v)
	if err != nil {
		v.log.WarnContext(ctx, "oidc issuer unreachable", "issuer", iss, "err", err)
		return identity.Claims{}, fmt.Errorf("issuer keys unavailable: %w", identity.ErrUnavailable)
	}
	tok, err := verifier.Verify(v.clientContext(ctx), token)
	if err != nil {
		return identity.Claims{}, unauth("rejected: " + short(err))
	}
	var raw map[string]any
	if err := tok.Claims(&raw); err != nil {
		return identity.Claims{}, unauth("claims unreadable")
	}
	now := v.now()
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry.Add(v.skew)) {
		return identity.Claims{}, unauth("expired")
	}
	if nbf, ok := numericDate(raw["nbf"]); ok && now.Add(v.skew).Before(nbf) {
		return identity.Claims{}, unauth("not yet valid")
	}
	if !tok.IssuedAt.IsZero() && now.Add(v.skew).Before(tok.IssuedAt) {
		return identity.Claims{}, unauth("issued in the future")
	}
	if tok.Subject == "" {
		return identity.Claims{}, unauth("without subject")
	}
	c := identity.Claims{Issuer: tok.Issuer, Subject: tok.Subject, Expiry: tok.Expiry, Environments: slices.Clone(is.cfg.Environments)}
	c.Email, _ = raw["email"].(string)
	c.Name, _ = raw["name"].(string)
	if values, present := stringList(raw[is.cfg.RolesClaim]); present {
		c.Roles = []string{}
		for _, val := range values {
			if len(is.cfg.RoleMap) == 0 {
				c.Roles = append(c.Roles, val)
			} else if role, ok := is.cfg.RoleMap[val]; ok {
				c.Roles = append(c.Roles, role)
			}
		}
	}
	amr, _ := stringList(raw["amr"])
	acr, _ := raw["acr"].(string)
	c.MFA = slices.ContainsFunc(amr, func(m string) bool { return slices.Contains(is.cfg.MFAMethods, m) }) ||
		(acr != "" && slices.Contains(is.cfg.MFAACRValues, acr))
	return c, nil
}

func (v *Verifier) clientContext(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, v.client)
}

// get returns the issuer's verifier, doing discovery once it succeeds.
func (is *issuer) get(ctx context.Context, v *Verifier) (*gooidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	cfg := &gooidc.Config{ClientID: is.cfg.Audience, SupportedSigningAlgs: signingAlgs, SkipExpiryCheck: true, Now: v.now}
	// The key set outlives this request: it refetches keys in the background of later calls.
	keyCtx := gooidc.ClientContext(context.WithoutCancel(ctx), v.client)
	if is.cfg.JWKSURL != "" {
		is.verifier = gooidc.NewVerifier(is.cfg.Issuer, gooidc.NewRemoteKeySet(keyCtx, is.cfg.JWKSURL), cfg)
		return is.verifier, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	provider, err := gooidc.NewProvider(dctx, is.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil || meta.JWKSURL == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	is.verifier = gooidc.NewVerifier(is.cfg.Issuer, gooidc.NewRemoteKeySet(keyCtx, meta.JWKSURL), cfg)
	return is.verifier, nil
}

func unverifiedIssuer(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return "", errors.New("not a JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	return claims.Issuer, nil
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// stringList reads a claim that is a string or a list of strings.
func stringList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return strings.Fields(x), true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out, true
	}
	return nil, false
}

func short(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
