// Package jsstore keeps the audit log in NATS JetStream: the audit stream itself (the
// records), a KV bucket with the Merkle tiles and tree state, a stream of signed
// checkpoints and a stream of query-index batches.
package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// Names of the JetStream assets.
const (
	AuditStream      = "BULWARK_AUDIT"
	CheckpointStream = "BULWARK_AUDIT_CHECKPOINTS"
	IndexStream      = "BULWARK_AUDIT_INDEX"
	TreeBucket       = "BULWARK_AUDIT_TREE"
	CheckpointSubj   = "bulwark.auditlog.v1.checkpoint"
	IndexSubj        = "bulwark.auditlog.v1.index"
	ConsumerName     = "audit-ingest"
)

// AuditSubjects are captured by the audit stream.
var AuditSubjects = []string{"bulwark.audit.v1.>", "bulwark.ratelimit.v1.>"}

// Params configures the store.
type Params struct {
	JS jetstream.JetStream
	// Retention is the audit stream's max age (records older than this expire).
	Retention time.Duration
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration
	// Replicas for every asset; 0 means 1.
	Replicas int
	// TracerProvider, when set, records a consumer span per ingested event in
	// the trace its publisher put in the message headers.
	TracerProvider trace.TracerProvider
}

// Store is the JetStream-backed audit store.
type Store struct {
	p     Params
	audit jetstream.Stream
	cps   jetstream.Stream
	index jetstream.Stream
	kv    jetstream.KeyValue
}

// New creates or updates the streams and bucket.
func New(ctx context.Context, p Params) (*Store, error) {
	if p.JS == nil {
		return nil, errors.New("jsstore: nil JetStream")
	}
	if p.Retention <= 0 || p.Duplicates <= 0 {
		return nil, errors.New("jsstore: retention and duplicates window must be positive")
	}
	if p.Replicas == 0 {
		p.Replicas = 1
	}
	s := &Store{p: p}
	var err error
	s.audit, err = p.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: AuditStream, Description: "Bulwark audit events (append-only)", Subjects: AuditSubjects,
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxAge: p.Retention, Duplicates: p.Duplicates, DenyDelete: true, DenyPurge: true,
		AllowDirect: true, Replicas: p.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", AuditStream, err)
	}
	s.cps, err = p.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: CheckpointStream, Description: "Signed checkpoints of the audit log, kept forever",
		Subjects: []string{CheckpointSubj}, Storage: jetstream.FileStorage,
		Duplicates: 10 * time.Minute, DenyDelete: true, DenyPurge: true, AllowDirect: true, Replicas: p.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", CheckpointStream, err)
	}
	s.index, err = p.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: IndexStream, Description: "Query index batches of the audit log (rebuildable)",
		Subjects: []string{IndexSubj}, Storage: jetstream.FileStorage, MaxAge: p.Retention,
		Duplicates: 10 * time.Minute, Replicas: p.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", IndexStream, err)
	}
	s.kv, err = p.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: TreeBucket, Description: "Merkle tiles and tree state of the audit log",
		History: 1, Storage: jetstream.FileStorage, Replicas: p.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", TreeBucket, err)
	}
	return s, nil
}

// --- merklelog.Store ---

func tileKey(id merklelog.TileID) string {
	return "tile." + strconv.FormatUint(uint64(id.Level), 10) + "." + strconv.FormatUint(id.Index, 10)
}

// GetTile reads a tile.
func (s *Store) GetTile(ctx context.Context, id merklelog.TileID) ([]byte, error) {
	e, err := s.kv.Get(ctx, tileKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, merklelog.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get tile: %w", err)
	}
	return e.Value(), nil
}

// PutTiles writes tiles in parallel and waits for every acknowledgement.
func (s *Store) PutTiles(ctx context.Context, tiles []merklelog.Tile) error {
	futs := make([]jetstream.PubAckFuture, 0, len(tiles))
	for _, t := range tiles {
		f, err := s.p.JS.PublishAsync("$KV."+TreeBucket+"."+tileKey(t.ID), t.Hashes)
		if err != nil {
			return fmt.Errorf("put tile: %w", err)
		}
		futs = append(futs, f)
	}
	return waitAll(ctx, futs)
}

func waitAll(ctx context.Context, futs []jetstream.PubAckFuture) error {
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// GetState reads the tree state.
func (s *Store) GetState(ctx context.Context) (merklelog.State, error) {
	e, err := s.kv.Get(ctx, "state")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return merklelog.State{}, merklelog.ErrNotFound
	}
	if err != nil {
		return merklelog.State{}, fmt.Errorf("get tree state: %w", err)
	}
	var st merklelog.State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return merklelog.State{}, fmt.Errorf("%w: state: %v", merklelog.ErrCorrupt, err)
	}
	return st, nil
}

// PutState writes the tree state; one KV put, so it is atomic.
func (s *Store) PutState(ctx context.Context, st merklelog.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode tree state: %w", err)
	}
	if _, err := s.kv.Put(ctx, "state", b); err != nil {
		return fmt.Errorf("put tree state: %w", err)
	}
	return nil
}

// --- records ---

func toRaw(m *jetstream.RawStreamMsg) auditlog.RawRecord {
	return auditlog.RawRecord{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time}
}

// Bounds returns the first and last sequence the audit stream holds.
func (s *Store) Bounds(ctx context.Context) (uint64, uint64, error) {
	info, err := s.audit.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("audit stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// Get reads one record by stream sequence.
func (s *Store) Get(ctx context.Context, seq uint64) (auditlog.RawRecord, error) {
	m, err := s.audit.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return auditlog.RawRecord{}, auditlog.ErrNotFound
	}
	if err != nil {
		return auditlog.RawRecord{}, fmt.Errorf("get record %d: %w", seq, err)
	}
	return toRaw(m), nil
}

// Read calls fn for each record with sequence in [from, to], in order.
func (s *Store) Read(ctx context.Context, from, to uint64, fn func(auditlog.RawRecord) error) error {
	return readStream(ctx, s.p.JS, AuditStream, from, to, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		return fn(auditlog.RawRecord{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: md.Timestamp})
	})
}

func readStream(ctx context.Context, js jetstream.JetStream, stream string, from, to uint64, fn func(jetstream.Msg) error) error {
	if to < from {
		return nil
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if md.Sequence.Stream > to {
			return nil
		}
		if err := fn(m); err != nil {
			return err
		}
		if md.Sequence.Stream == to {
			return nil
		}
	}
}

// PublishDeadLetters publishes dead letters and waits for their acknowledgements. Each
// carries Nats-Msg-Id "dead_letter:<sequence>" so a replay after a crash is dropped.
func (s *Store) PublishDeadLetters(ctx context.Context, dls []auditlog.OutMsg) error {
	futs := make([]jetstream.PubAckFuture, 0, len(dls))
	for _, d := range dls {
		f, err := s.p.JS.PublishMsgAsync(&nats.Msg{Subject: d.Subject, Data: d.Data, Header: nats.Header{jetstream.MsgIDHeader: []string{d.ID}}})
		if err != nil {
			return fmt.Errorf("publish dead letter: %w", err)
		}
		futs = append(futs, f)
	}
	return waitAll(ctx, futs)
}

// --- ingest consumer ---

// Consumer is the durable pull consumer that feeds the tree.
type Consumer struct {
	c  jetstream.Consumer
	tp trace.TracerProvider
}

// Consumer (re)creates the durable consumer so that it starts at sequence from: the
// tree state, not the consumer, is the source of truth for what was applied.
func (s *Store) Consumer(ctx context.Context, from uint64) (auditlog.Source, error) {
	err := s.audit.DeleteConsumer(ctx, ConsumerName)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("reset consumer: %w", err)
	}
	c, err := s.audit.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: ConsumerName, Description: "audit log ingester",
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		AckPolicy: jetstream.AckAllPolicy, AckWait: time.Minute, MaxAckPending: 100000,
		MaxRequestBatch: 10000,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	return &Consumer{c: c, tp: s.p.TracerProvider}, nil
}

// Fetch returns up to max messages, waiting at most wait for the first ones.
func (c *Consumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]auditlog.InMsg, error) {
	b, err := c.c.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var out []auditlog.InMsg
	for m := range b.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return out, fmt.Errorf("fetch: %w", err)
		}
		platform.ConsumeSpan(ctx, c.tp, "audit ingest "+m.Subject(), m.Headers())
		out = append(out, auditlog.InMsg{RawRecord: auditlog.RawRecord{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: md.Timestamp}, Ack: m.Ack})
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return out, fmt.Errorf("fetch: %w", err)
	}
	return out, nil
}

// --- checkpoints ---

// PublishCheckpoint appends a signed checkpoint; the message id makes a retry harmless.
func (s *Store) PublishCheckpoint(ctx context.Context, size uint64, signed []byte) error {
	_, err := s.p.JS.Publish(ctx, CheckpointSubj, signed, jetstream.WithMsgID("checkpoint:"+strconv.FormatUint(size, 10)))
	if err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	return nil
}

// CheckpointCount returns how many checkpoints are stored.
func (s *Store) CheckpointCount(ctx context.Context) (uint64, error) {
	info, err := s.cps.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("checkpoint stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// CheckpointAt returns the n-th stored checkpoint (1-based).
func (s *Store) CheckpointAt(ctx context.Context, n uint64) ([]byte, error) {
	m, err := s.cps.GetMsg(ctx, n)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, auditlog.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get checkpoint: %w", err)
	}
	return m.Data, nil
}

// --- index ---

// PublishIndex stores one index batch covering leaves [first, end).
func (s *Store) PublishIndex(ctx context.Context, first, end uint64, data []byte) error {
	_, err := s.p.JS.Publish(ctx, IndexSubj, data, jetstream.WithMsgID("index:"+strconv.FormatUint(first, 10)+"-"+strconv.FormatUint(end, 10)))
	if err != nil && !strings.Contains(err.Error(), "duplicate") {
		return fmt.Errorf("publish index: %w", err)
	}
	return nil
}

// ReadIndex calls fn with every stored index batch, oldest first.
func (s *Store) ReadIndex(ctx context.Context, fn func([]byte) error) error {
	info, err := s.index.Info(ctx)
	if err != nil {
		return fmt.Errorf("index stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	return readStream(ctx, s.p.JS, IndexStream, info.State.FirstSeq, info.State.LastSeq, func(m jetstream.Msg) error { return fn(m.Data()) })
}
