// Package adminaudit publishes the router's configuration changes (providers,
// routes, enable/disable) as admin_action audit events on JetStream, with the
// event id as the message id so a retried publish is never recorded twice.
package adminaudit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

// Subject is where admin actions are published.
const Subject = "bulwark.audit.v1.admin_action"

// ErrNotAudited is returned when an event could not be published.
var ErrNotAudited = errors.New("admin action not audited")

// JetStream is the part of jetstream.JetStream the publisher needs.
type JetStream interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Params configure a Publisher.
type Params struct {
	JS     JetStream
	Logger *slog.Logger
	Now    func() time.Time
	// Attempts to publish before giving up (3 when 0); retries are deduplicated by message id.
	Attempts int
}

// Publisher publishes admin actions. A nil JS makes it log-only (tests of other parts, dev without NATS).
type Publisher struct {
	p Params
}

// New returns a Publisher.
func New(p Params) *Publisher {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Attempts <= 0 {
		p.Attempts = 3
	}
	return &Publisher{p: p}
}

// Action is one change.
type Action struct {
	Actor       string
	MFA         bool
	Action      string // e.g. "router.provider.put"
	Target      string
	Before      any // nil when created
	After       any
	Reason      string
	Environment string
	TraceID     string
	Details     map[string]string
}

// Hash is "sha256:<hex>" of v's JSON, or "" for nil.
func Hash(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Publish records the action and returns its event id.
func (p *Publisher) Publish(ctx context.Context, a Action) (string, error) {
	now := p.p.Now()
	id := ulid.MustNew(ulid.Timestamp(now), rand.Reader).String()
	ev := &auditv1.AuditEvent{
		EventId: id, Time: timestamppb.New(now), Environment: a.Environment, SourceService: "router", TraceId: a.TraceID,
		Payload: &auditv1.AuditEvent_AdminAction{AdminAction: &auditv1.AdminAction{
			Actor: a.Actor, Action: a.Action, Target: a.Target, BeforeHash: Hash(a.Before), AfterHash: Hash(a.After),
			Reason: a.Reason, Details: a.Details, Mfa: a.MFA,
		}},
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return "", fmt.Errorf("encode admin action: %w", err)
	}
	if p.p.JS == nil {
		p.p.Logger.WarnContext(ctx, "admin action not published: no JetStream configured", "event_id", id, "action", a.Action, "target", a.Target)
		return id, nil
	}
	var last error
	for i := range p.p.Attempts {
		msg := &nats.Msg{Subject: Subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, last = p.p.JS.PublishMsg(ctx, msg); last == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(i+1) * 100 * time.Millisecond)
	}
	p.p.Logger.ErrorContext(ctx, "admin action publish failed", "event_id", id, "action", a.Action, "target", a.Target, "err", last)
	return id, fmt.Errorf("publish %s: %w", a.Action, ErrNotAudited)
}
