package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/identity/internal/oidc"
)

// issuer is a real local OIDC issuer: discovery, a JWKS endpoint, and real keys.
type issuer struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey // published
	signer  jose.Signer
	kid     string
	fetches atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks", "authorization_endpoint": is.srv.URL + "/auth",
			"token_endpoint": is.srv.URL + "/token", "id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: is.keys})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// rotate publishes a new key (dropping the old ones unless keep) and signs with it.
func (is *issuer) rotate(kid string, key crypto.Signer, alg jose.SignatureAlgorithm, keep bool) {
	is.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	pub := jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
	if keep {
		is.keys = append(is.keys, pub)
	} else {
		is.keys = []jose.JSONWebKey{pub}
	}
	is.signer, is.kid = signer, kid
}

func (is *issuer) sign(claims map[string]any) string {
	is.t.Helper()
	is.mu.Lock()
	signer := is.signer
	is.mu.Unlock()
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

func (is *issuer) claims(sub string, ttl time.Duration, extra map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": is.srv.URL, "sub": sub, "aud": "bulwark", "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		"email": sub + "@example.com", "name": "Test " + sub}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verifier(t *testing.T, cfg oidc.IssuerConfig, skew time.Duration) *oidc.Verifier {
	t.Helper()
	v, err := oidc.New(oidc.Params{Issuers: []oidc.IssuerConfig{cfg}, ClockSkew: skew, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify_RealRSASignatureViaDiscoveryMapsRolesAndMFA(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark", RolesClaim: "groups",
		RoleMap: map[string]string{"eng": "developer", "sec": "approver"}, Environments: []string{"dev"}}, time.Second)
	tok := is.sign(is.claims("alice", time.Minute, map[string]any{"groups": []string{"eng", "sec", "sales"}, "amr": []string{"pwd", "otp"}}))
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || c.Issuer != is.srv.URL || c.Email != "alice@example.com" || !c.MFA ||
		strings.Join(c.Roles, ",") != "developer,approver" || strings.Join(c.Environments, ",") != "dev" {
		t.Fatalf("claims = %+v", c)
	}
	single := is.sign(is.claims("bob", time.Minute, map[string]any{"amr": []string{"pwd"}}))
	c, err = v.Verify(context.Background(), single)
	if err != nil || c.MFA || c.Roles != nil {
		t.Fatalf("single factor: %+v %v", c, err)
	}
}

func TestVerify_ACRValueCountsAsMFAWithECKeys(t *testing.T) {
	is := newIssuer(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is.rotate("ec1", ec, jose.ES256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark", JWKSURL: is.srv.URL + "/jwks", MFAACRValues: []string{"phr"}}, time.Second)
	c, err := v.Verify(context.Background(), is.sign(is.claims("carol", time.Minute, map[string]any{"acr": "phr"})))
	if err != nil || !c.MFA {
		t.Fatalf("claims = %+v, %v", c, err)
	}
}

func TestVerify_RejectsWrongAudienceUnknownIssuerAndTampering(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark"}, time.Second)
	other := newIssuer(t)
	other.rotate("k1", rsaKey(t), jose.RS256, false)

	good := is.sign(is.claims("alice", time.Minute, nil))
	parts := strings.Split(good, ".")
	forgedPayload := strings.Split(is.sign(is.claims("mallory", time.Minute, nil)), ".")[1]
	cases := map[string]string{
		"wrong audience":           is.sign(is.claims("alice", time.Minute, map[string]any{"aud": "someone-else"})),
		"unknown issuer":           other.sign(other.claims("alice", time.Minute, nil)),
		"swapped payload":          parts[0] + "." + forgedPayload + "." + parts[2],
		"no signature":             parts[0] + "." + parts[1] + ".",
		"garbage":                  "a.b.c",
		"claims issuer, other key": other.sign(map[string]any{"iss": is.srv.URL, "sub": "x", "aud": "bulwark", "exp": time.Now().Add(time.Minute).Unix()}),
	}
	for name, tok := range cases {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, identity.ErrUnauthenticated) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

func TestVerify_ExpiryIsRealWithBoundedSkew(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark"}, 500*time.Millisecond)
	// Expired 3s ago: refused with 500ms of skew, accepted with 10s.
	late := is.claims("alice", 0, nil)
	late["exp"] = time.Now().Add(-3 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), is.sign(late)); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("expired token accepted: %v", err)
	}
	lenient := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark"}, 10*time.Second)
	if _, err := lenient.Verify(context.Background(), is.sign(late)); err != nil {
		t.Fatalf("token within skew refused: %v", err)
	}
	short := is.sign(is.claims("alice", time.Second, nil))
	if _, err := v.Verify(context.Background(), short); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	time.Sleep(2600 * time.Millisecond)
	if _, err := v.Verify(context.Background(), short); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("expired token accepted: %v", err)
	}
	future := is.claims("alice", time.Hour, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(context.Background(), is.sign(future)); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("not-yet-valid token accepted: %v", err)
	}
}

func TestVerify_FollowsIssuerKeyRotation(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark"}, time.Second)
	oldTok := is.sign(is.claims("alice", time.Hour, nil))
	if _, err := v.Verify(context.Background(), oldTok); err != nil {
		t.Fatal(err)
	}
	before := is.fetches.Load()
	is.rotate("k2", rsaKey(t), jose.RS256, false) // k1 retired
	newTok := is.sign(is.claims("alice", time.Hour, nil))
	if _, err := v.Verify(context.Background(), newTok); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if is.fetches.Load() == before {
		t.Fatal("JWKS not refetched for an unknown key id")
	}
	// go-oidc stores the refetched set just after answering the request that
	// triggered the fetch; from then on the retired key is refused.
	deadline := time.Now().Add(time.Second)
	for {
		_, err := v.Verify(context.Background(), oldTok)
		if errors.Is(err, identity.ErrUnauthenticated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token signed with the retired key still accepted a second after rotation: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Known keys are cached: verifying again does not refetch.
	n := is.fetches.Load()
	for range 3 {
		if _, err := v.Verify(context.Background(), newTok); err != nil {
			t.Fatal(err)
		}
	}
	if is.fetches.Load() != n {
		t.Fatal("JWKS refetched for a cached key")
	}
}

func TestVerify_IssuerDownIsUnavailableNotUnauthenticated(t *testing.T) {
	is := newIssuer(t)
	is.rotate("k1", rsaKey(t), jose.RS256, false)
	tok := is.sign(is.claims("alice", time.Hour, nil))
	v := verifier(t, oidc.IssuerConfig{Issuer: is.srv.URL, Audience: "bulwark"}, time.Second)
	is.srv.Close()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}
