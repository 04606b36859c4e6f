// Package natskv stores the identity domain in a NATS JetStream key-value bucket
// (history on, so every version of a key stays readable) and publishes the
// service's events on NATS.
package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

// Subjects the service publishes on.
const (
	SubjectAdminAction   = "bulwark.audit.v1.admin_action"
	SubjectPolicyChanged = "bulwark.identity.v1.policy_changed"
)

// DefaultBucket is the bucket name used unless configured otherwise.
const DefaultBucket = "bulwark_identity"

// History is how many versions of each key the bucket keeps (the JetStream maximum).
// Versioned objects (policies, prompts) are also written under one key per version.
const History = 64

// StoreParams configures a Store.
type StoreParams struct {
	JetStream jetstream.JetStream
	// Bucket name; default DefaultBucket.
	Bucket string
	// Replicas of the bucket's stream; default 1.
	Replicas int
	Logger   *slog.Logger
}

// Store is identity.Store on a JetStream KV bucket.
type Store struct {
	kv  jetstream.KeyValue
	log *slog.Logger
}

var _ identity.Store = (*Store)(nil)

// NewStore opens the bucket, creating it if needed.
func NewStore(ctx context.Context, p StoreParams) (*Store, error) {
	if p.JetStream == nil || p.Logger == nil {
		return nil, errors.New("natskv: JetStream and Logger are required")
	}
	if p.Bucket == "" {
		p.Bucket = DefaultBucket
	}
	if p.Replicas <= 0 {
		p.Replicas = 1
	}
	kv, err := p.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: p.Bucket, Description: "Bulwark identity: principals, keys, roles, policies, prompts, changes",
		History: History, Storage: jetstream.FileStorage, Replicas: p.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("natskv: open bucket %q: %w", p.Bucket, err)
	}
	return &Store{kv: kv, log: p.Logger}, nil
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted), errors.Is(err, jetstream.ErrNoKeysFound):
		return identity.ErrNotFound
	// Update wraps ErrKeyRevisionMismatch around an error that also matches
	// ErrKeyExists (same API code), so the mismatch must be tested first.
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return identity.ErrConflict
	case errors.Is(err, jetstream.ErrKeyExists):
		return identity.ErrExists
	case errors.Is(err, jetstream.ErrInvalidKey):
		return fmt.Errorf("%w: key", identity.ErrInvalid)
	}
	return fmt.Errorf("%w: %w", identity.ErrUnavailable, err)
}

func entry(e jetstream.KeyValueEntry) identity.Entry {
	return identity.Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Time: e.Created()}
}

// Get implements identity.Store.
func (s *Store) Get(ctx context.Context, key string) (identity.Entry, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return identity.Entry{}, mapErr(err)
	}
	return entry(e), nil
}

// Create implements identity.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	return rev, mapErr(err)
}

// Update implements identity.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := s.kv.Update(ctx, key, value, revision)
	return rev, mapErr(err)
}

// Delete implements identity.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	return mapErr(s.kv.Delete(ctx, key))
}

// History implements identity.Store.
func (s *Store) History(ctx context.Context, key string) ([]identity.Entry, error) {
	es, err := s.kv.History(ctx, key)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]identity.Entry, 0, len(es))
	for _, e := range es {
		if e.Operation() == jetstream.KeyValuePut {
			out = append(out, entry(e))
		}
	}
	return out, nil
}

// Keys implements identity.Store.
func (s *Store) Keys(ctx context.Context, prefix string) ([]string, error) {
	l, err := s.kv.ListKeysFiltered(ctx, prefix+".>")
	if err != nil {
		if errors.Is(mapErr(err), identity.ErrNotFound) {
			return nil, nil
		}
		return nil, mapErr(err)
	}
	defer func() { _ = l.Stop() }()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Watch implements identity.Store. If the watch breaks it is re-established and
// onChange("") is called, meaning "anything may have changed".
func (s *Store) Watch(ctx context.Context, onChange func(key string)) error {
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return mapErr(err)
	}
	go func() {
		for {
			for e := range w.Updates() {
				if e != nil {
					onChange(e.Key())
				}
			}
			if ctx.Err() != nil {
				return
			}
			s.log.WarnContext(ctx, "store watch ended; re-establishing")
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
				if w, err = s.kv.WatchAll(ctx, jetstream.UpdatesOnly()); err == nil {
					break
				}
			}
			onChange("")
		}
	}()
	return nil
}

// Publisher publishes the identity service's events.
type Publisher struct {
	nc *nats.Conn
	js jetstream.JetStream
}

var _ identity.Publisher = (*Publisher)(nil)

// NewPublisher publishes admin actions through JetStream (acknowledged by the
// audit stream) and policy_changed on core NATS (cache hints).
func NewPublisher(nc *nats.Conn, js jetstream.JetStream) *Publisher {
	return &Publisher{nc: nc, js: js}
}

// PublishAdminAction implements identity.Publisher.
func (p *Publisher) PublishAdminAction(ctx context.Context, ev *auditv1.AuditEvent) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode admin action: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := p.js.Publish(ctx, SubjectAdminAction, data, jetstream.WithMsgID(ev.EventId)); err != nil {
		return fmt.Errorf("publish admin action: %w", err)
	}
	return nil
}

// PublishPolicyChanged implements identity.Publisher.
func (p *Publisher) PublishPolicyChanged(_ context.Context, ev *identityv1.PolicyChangedEvent) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode policy_changed: %w", err)
	}
	msg := &nats.Msg{Subject: SubjectPolicyChanged, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.EventId)
	if err := p.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish policy_changed: %w", err)
	}
	return nil
}
