package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// Params configures a Service.
type Params struct {
	Store     Store
	Publisher Publisher
	// Verifier checks OIDC tokens; nil disables OIDC.
	Verifier TokenVerifier
	// Pepper keys the HMAC of API keys; at least 32 bytes, from Vault.
	Pepper []byte
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Environments that exist; default dev, staging, prod.
	Environments []string
	// DevEnvironments get the built-in development policy until one is approved; default dev.
	DevEnvironments []string
	// StagingEnvironment must be promoted to before ProdEnvironment; defaults staging and prod.
	StagingEnvironment string
	ProdEnvironment    string
	// RotationGrace is how long a rotated key keeps working by default; default 24h.
	RotationGrace time.Duration
	// LastUseInterval throttles last-use writes per key; default 1m.
	LastUseInterval time.Duration
	// DecisionCacheSize bounds the decision cache; default 100000 entries.
	DecisionCacheSize int
}

// Service is the identity domain. Create it with New, then call Start.
type Service struct {
	store     Store
	pub       Publisher
	verifier  TokenVerifier
	pepper    []byte
	log       *slog.Logger
	now       func() time.Time
	envs      []string
	devEnvs   []string
	staging   string
	prod      string
	grace     time.Duration
	lastUseIn time.Duration

	principals *cache[*identityv1.Principal]
	keys       *cache[*keyRecord]
	roles      *cache[map[string]*identityv1.Role]
	policies   *cache[*activePolicy]
	prompts    *cache[*identityv1.PromptVersion]
	decisions  *cache[*identityv1.AuthorizeResponse]

	lastUse sync.Map // key id -> time.Time of the last write

	// invalidations counts cache invalidations seen from the watch, for tests and metrics.
	invalidations atomic.Uint64
}

var envPattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// New validates params and builds a Service.
func New(p Params) (*Service, error) {
	if p.Store == nil || p.Publisher == nil || p.Logger == nil {
		return nil, fmt.Errorf("identity: Store, Publisher and Logger are required: %w", ErrInvalid)
	}
	if len(p.Pepper) < 32 {
		return nil, fmt.Errorf("identity: pepper must be at least 32 bytes: %w", ErrInvalid)
	}
	s := &Service{
		store: p.Store, pub: p.Publisher, verifier: p.Verifier, pepper: slices.Clone(p.Pepper), log: p.Logger,
		now: p.Now, envs: p.Environments, devEnvs: p.DevEnvironments, staging: p.StagingEnvironment, prod: p.ProdEnvironment,
		grace: p.RotationGrace, lastUseIn: p.LastUseInterval,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(s.envs) == 0 {
		s.envs = []string{"dev", "staging", "prod"}
	}
	for _, e := range s.envs {
		if !envPattern.MatchString(e) {
			return nil, fmt.Errorf("identity: environment name %q must match %s: %w", e, envPattern, ErrInvalid)
		}
	}
	if s.devEnvs == nil {
		s.devEnvs = []string{"dev"}
	}
	if s.staging == "" {
		s.staging = "staging"
	}
	if s.prod == "" {
		s.prod = "prod"
	}
	if s.grace <= 0 {
		s.grace = 24 * time.Hour
	}
	if s.lastUseIn <= 0 {
		s.lastUseIn = time.Minute
	}
	size := p.DecisionCacheSize
	if size <= 0 {
		size = 100_000
	}
	s.principals = newCache[*identityv1.Principal](size)
	s.keys = newCache[*keyRecord](size)
	s.roles = newCache[map[string]*identityv1.Role](1)
	s.policies = newCache[*activePolicy](len(s.envs) + 16)
	s.prompts = newCache[*identityv1.PromptVersion](10_000)
	s.decisions = newCache[*identityv1.AuthorizeResponse](size)
	return s, nil
}

// Start watches the store so that changes made by any replica invalidate this
// replica's caches, and retries undelivered events. It returns once the watch is
// established; both stop when ctx ends.
func (s *Service) Start(ctx context.Context) error {
	if err := s.store.Watch(ctx, s.invalidate); err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	go s.flushOutbox(ctx)
	return nil
}

// invalidate drops what a changed key may have made stale.
func (s *Service) invalidate(key string) {
	s.invalidations.Add(1)
	kind, rest, _ := strings.Cut(key, ".")
	switch kind {
	case "apikey":
		s.keys.delete(rest)
	case "principal", "oidc":
		s.principals.reset()
		s.decisions.reset()
	case "role":
		s.roles.reset()
		s.decisions.reset()
	case "policy":
		s.policies.reset()
		s.decisions.reset()
	case "prompt":
		s.prompts.reset()
		s.decisions.reset()
	case "":
		// The watch was re-established: anything may have changed.
		s.keys.reset()
		s.principals.reset()
		s.roles.reset()
		s.policies.reset()
		s.prompts.reset()
		s.decisions.reset()
	}
}

// Invalidations reports how many store changes this replica has seen.
func (s *Service) Invalidations() uint64 { return s.invalidations.Load() }

// Environments returns the environments that exist.
func (s *Service) Environments() []string { return slices.Clone(s.envs) }

func (s *Service) knownEnv(env string) bool { return slices.Contains(s.envs, env) }

// cache is a bounded map that refuses stale fills: a value loaded before an
// invalidation is not stored after it.
type cache[V any] struct {
	mu  sync.RWMutex
	ver uint64
	m   map[string]V
	max int
}

func newCache[V any](max int) *cache[V] { return &cache[V]{m: make(map[string]V), max: max} }

func (c *cache[V]) get(key string) (V, uint64, bool) {
	c.mu.RLock()
	v, ok := c.m[key]
	ver := c.ver
	c.mu.RUnlock()
	return v, ver, ok
}

func (c *cache[V]) put(ver uint64, key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ver != c.ver {
		return
	}
	if len(c.m) >= c.max {
		c.m = make(map[string]V)
	}
	c.m[key] = v
}

func (c *cache[V]) delete(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.ver++
	c.mu.Unlock()
}

func (c *cache[V]) reset() {
	c.mu.Lock()
	c.m = make(map[string]V)
	c.ver++
	c.mu.Unlock()
}

// newID returns a lowercase ULID.
func newID() string { return strings.ToLower(ulid.Make().String()) }

// eventID returns an uppercase ULID, the form events use.
func eventID() string { return ulid.Make().String() }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("identity: reading randomness: %v", err))
	}
	return b
}

// contentHash is "sha256:<hex>" of content.
func contentHash(content string) string {
	sum := sha256.Sum256([]byte(content))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// objectHash is the content hash of a message's deterministic encoding.
func objectHash(m proto.Message) string {
	if m == nil {
		return ""
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

func encode(m proto.Message) []byte {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("identity: encoding %T: %v", m, err))
	}
	return b
}

func decode[M proto.Message](b []byte, m M) (M, error) {
	if err := jsonIn.Unmarshal(b, m); err != nil {
		return m, fmt.Errorf("decode %T: %w", m, err)
	}
	return m, nil
}

// load reads and decodes one stored message.
func load[M proto.Message](ctx context.Context, s Store, key string, m M) (M, uint64, error) {
	e, err := s.Get(ctx, key)
	if err != nil {
		return m, 0, err
	}
	m, err = decode(e.Value, m)
	return m, e.Revision, err
}

// audit records one admin action. If the event cannot be published now it is
// kept in the store's outbox and retried, so it is never lost.
func (s *Service) audit(ctx context.Context, a adminAction) string {
	id := a.eventID
	if id == "" {
		id = eventID()
	}
	ev := &auditv1.AuditEvent{
		EventId:       id,
		Time:          timestamppb.New(s.now()),
		Environment:   a.environment,
		SourceService: "identity",
		Payload: &auditv1.AuditEvent_AdminAction{AdminAction: &auditv1.AdminAction{
			Actor: a.actor.PrincipalID, Action: a.action, Target: a.target,
			BeforeHash: a.before, AfterHash: a.after, Reason: a.reason, BreakGlass: a.breakGlass,
			ChangeId: a.changeID, Details: a.details, Mfa: a.actor.MFA,
		}},
	}
	if err := s.pub.PublishAdminAction(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "admin action not delivered; kept in outbox for retry",
			"event_id", id, "action", a.action, "err", err)
		b, _ := proto.Marshal(ev)
		if _, err := s.store.Create(context.WithoutCancel(ctx), "outbox."+id, b); err != nil {
			s.log.ErrorContext(ctx, "admin action could not be kept in outbox", "event_id", id, "err", err)
		}
	}
	return id
}

type adminAction struct {
	eventID     string
	actor       Actor
	action      string
	target      string
	before      string
	after       string
	reason      string
	breakGlass  bool
	changeID    string
	environment string
	details     map[string]string
}

// changed tells gateways to drop cached decisions that depend on an object.
func (s *Service) changed(ctx context.Context, kind, id, env, version string) {
	ev := &identityv1.PolicyChangedEvent{EventId: eventID(), Time: timestamppb.New(s.now()), Kind: kind, Id: id, Environment: env, Version: version}
	if err := s.pub.PublishPolicyChanged(ctx, ev); err != nil {
		// Caches in identity replicas are invalidated by the store watch; gateways
		// fall back to their cache TTL. Log and go on.
		s.log.WarnContext(ctx, "policy_changed not published", "kind", kind, "err", err)
	}
}

// flushOutbox republishes admin actions whose first publish failed.
func (s *Service) flushOutbox(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := s.store.Keys(ctx, "outbox")
		if err != nil || len(keys) == 0 {
			continue
		}
		for _, key := range keys {
			e, err := s.store.Get(ctx, key)
			if err != nil {
				continue
			}
			ev := &auditv1.AuditEvent{}
			if err := proto.Unmarshal(e.Value, ev); err != nil {
				s.log.ErrorContext(ctx, "outbox entry unreadable", "key", key, "err", err)
				continue
			}
			if err := s.pub.PublishAdminAction(ctx, ev); err != nil {
				continue
			}
			if err := s.store.Delete(ctx, key); err != nil {
				s.log.WarnContext(ctx, "outbox entry delivered but not removed; it will be delivered again and deduplicated", "event_id", ev.EventId, "err", err)
			}
			s.log.InfoContext(ctx, "admin action delivered from outbox", "event_id", ev.EventId)
		}
	}
}

func notFoundAs(err error, what string) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// ResetDecisionCache drops every cached decision (benchmarks and operators'
// tooling; normal invalidation is driven by the store watch).
func (s *Service) ResetDecisionCache() { s.decisions.reset() }

// maxAttempts bounds compare-and-set retries of one write.
const maxAttempts = 20

// pause backs off before retry attempt n (none before the first), with jitter so
// that concurrent writers spread out.
func pause(n int) {
	if n == 0 {
		return
	}
	d := time.Duration(n) * time.Millisecond
	time.Sleep(d/2 + time.Duration(mrand.Int64N(int64(d))))
}
