// Package identity is the identity service's domain: principals, roles, API keys,
// authentication (keys and OIDC), the policy decision, the prompt registry and the
// change-approval workflow. It declares the storage, event and token-verification
// interfaces it needs; adapters for NATS, Vault and OIDC live beside it.
package identity

import (
	"context"
	"errors"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// Sentinel errors. internal/server maps them to Connect codes.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object with that id already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: the object changed concurrently; retry.
	ErrConflict = errors.New("concurrent modification")
	// ErrInvalid: the request is malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthenticated: the credential is missing, unknown, expired, revoked or for another environment.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the actor may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrFailedPrecondition: the object is not in a state that allows this (e.g. the two-person rule).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: a dependency (store, event bus) did not answer.
	ErrUnavailable = errors.New("unavailable")
)

// Entry is one stored value and its revision.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Time     time.Time
}

// Store is a versioned key-value store with history and change notification.
// Keys are dot-separated tokens of [A-Za-z0-9_-] (e.g. "principal.usr_01j...").
type Store interface {
	// Get returns the latest value of a key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create stores a value only if the key does not exist, else ErrExists.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update stores a value only if the latest revision is revision, else ErrConflict.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// History returns every kept version of a key, oldest first.
	History(ctx context.Context, key string) ([]Entry, error)
	// Delete removes a key (its history stays readable until purged).
	Delete(ctx context.Context, key string) error
	// Keys lists the keys under a prefix such as "principal" (meaning "principal.>").
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Watch calls onChange with each key changed by anyone from now on, until ctx
	// ends. It returns once the watch is established.
	Watch(ctx context.Context, onChange func(key string)) error
}

// Publisher delivers events. Both publish with Nats-Msg-Id = event id.
type Publisher interface {
	// PublishAdminAction publishes on bulwark.audit.v1.admin_action.
	PublishAdminAction(ctx context.Context, ev *auditv1.AuditEvent) error
	// PublishPolicyChanged publishes on bulwark.identity.v1.policy_changed.
	PublishPolicyChanged(ctx context.Context, ev *identityv1.PolicyChangedEvent) error
}

// Claims are what a verified OIDC token says about its bearer.
type Claims struct {
	Issuer  string
	Subject string
	Email   string
	Name    string
	// Roles mapped from the token's role or group claims, if the issuer maps any.
	Roles []string
	// Environments the issuer grants new principals.
	Environments []string
	// MFA is true when amr names a second factor or acr is an accepted value.
	MFA    bool
	Expiry time.Time
}

// TokenVerifier verifies bearer JWTs against the configured issuers.
type TokenVerifier interface {
	// Verify checks signature, issuer, audience and expiry. Any failure wraps ErrUnauthenticated.
	Verify(ctx context.Context, token string) (Claims, error)
}

// Actor is who performs an admin operation, as authenticated at the edge.
type Actor struct {
	PrincipalID string
	MFA         bool
	Environment string
}
