package identity_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/identity/internal/natskv"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t      testing.TB
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *natskv.Store
	clock  *clock
	pepper []byte
	svc    *identity.Service
	ctx    context.Context
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newEnv starts a real NATS server with the audit stream (as the audit service
// creates it) and one identity replica.
func newEnv(t testing.TB) *env {
	t.Helper()
	nc, js := platformtest.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatalf("create audit stream: %v", err)
	}
	st, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: js, Logger: logger()})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	pepper := make([]byte, 32)
	_, _ = rand.Read(pepper)
	e := &env{t: t, nc: nc, js: js, store: st, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, pepper: pepper, ctx: ctx}
	e.svc = e.replica()
	return e
}

// replica starts another Service on the same bucket, as a second pod would.
func (e *env) replica() *identity.Service {
	e.t.Helper()
	st, err := natskv.NewStore(e.ctx, natskv.StoreParams{JetStream: e.js, Logger: logger()})
	if err != nil {
		e.t.Fatalf("store: %v", err)
	}
	svc, err := identity.New(identity.Params{
		Store: st, Publisher: natskv.NewPublisher(e.nc, e.js), Pepper: e.pepper, Logger: logger(), Now: e.clock.Now,
	})
	if err != nil {
		e.t.Fatalf("new: %v", err)
	}
	if err := svc.Start(e.ctx); err != nil {
		e.t.Fatalf("start: %v", err)
	}
	return svc
}

var root = identity.Actor{PrincipalID: "svc_bootstrap_admin", MFA: true}

func (e *env) principal(kind identityv1.PrincipalKind, roles []string, envs ...string) *identityv1.Principal {
	e.t.Helper()
	if len(envs) == 0 {
		envs = []string{"dev", "staging", "prod"}
	}
	p, err := e.svc.CreatePrincipal(e.ctx, root, &identityv1.Principal{Kind: kind, Roles: roles, Environments: envs, DisplayName: "test"})
	if err != nil {
		e.t.Fatalf("create principal: %v", err)
	}
	return p
}

func (e *env) person(roles ...string) *identityv1.Principal {
	return e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, roles)
}

func (e *env) key(p *identityv1.Principal, envName string, ttl time.Duration, scopes ...string) (*identityv1.ApiKey, string) {
	e.t.Helper()
	k, secret, err := e.svc.CreateApiKey(e.ctx, root, p.Id, envName, "test", scopes, ttl)
	if err != nil {
		e.t.Fatalf("create key: %v", err)
	}
	return k, secret
}

// adminActions reads every admin_action recorded on the audit stream so far.
func (e *env) adminActions() []recorded {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, "BULWARK_AUDIT")
	if err != nil {
		e.t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	var out []recorded
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev := &auditv1.AuditEvent{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			e.t.Fatalf("decode: %v", err)
		}
		out = append(out, recorded{msgID: m.Header.Get(jetstream.MsgIDHeader), ev: ev})
	}
	return out
}

type recorded struct {
	msgID string
	ev    *auditv1.AuditEvent
}

func (e *env) actionsNamed(name string) []*auditv1.AdminAction {
	var out []*auditv1.AdminAction
	for _, r := range e.adminActions() {
		if a := r.ev.GetAdminAction(); a != nil && a.Action == name {
			out = append(out, a)
		}
	}
	return out
}

func jsStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}
}
