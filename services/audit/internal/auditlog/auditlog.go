// Package auditlog is the audit service's domain: it ingests audit events from the stream
// into the Merkle tree in stream order, publishes signed checkpoints, answers queries and
// proofs, and writes evidence bundles. Storage and signing come in through interfaces; the
// package has no transport code.
//
// Every message the audit stream stores becomes a leaf, and leaf index = stream sequence - 1.
// A malformed message is a leaf too (the log proves what the stream holds, byte for byte);
// it is indexed as kind "invalid", and a DeadLetter naming its sequence and the reason is
// published on bulwark.audit.v1.dead_letter, where it is captured by the same stream and
// becomes a later leaf of kind "dead_letter". Dead letters themselves are never
// dead-lettered again.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors; internal/server maps them to codes.
var (
	ErrNotFound        = errors.New("not found")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNoCheckpoint    = errors.New("no checkpoint covers the request yet")
	ErrLogTruncated    = errors.New("audit stream holds fewer records than the tree: the log was truncated")
	ErrTreeMismatch    = errors.New("stored tree does not match the latest signed checkpoint")
	errGap             = errors.New("stream sequence gap")
)

// RawRecord is a message as the stream stored it.
type RawRecord struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time
}

// InMsg is a message delivered to the ingester.
type InMsg struct {
	RawRecord
	Ack func() error
}

// OutMsg is a message to publish with a de-duplication id.
type OutMsg struct {
	Subject, ID string
	Data        []byte
}

// Source delivers the audit stream in order from a starting sequence.
type Source interface {
	Fetch(ctx context.Context, max int, wait time.Duration) ([]InMsg, error)
}

// Store is the persistence the log needs.
type Store interface {
	merklelog.Store
	Bounds(ctx context.Context) (first, last uint64, err error)
	Get(ctx context.Context, seq uint64) (RawRecord, error)
	Read(ctx context.Context, from, to uint64, fn func(RawRecord) error) error
	PublishDeadLetters(ctx context.Context, msgs []OutMsg) error
	Consumer(ctx context.Context, from uint64) (Source, error)
	PublishCheckpoint(ctx context.Context, size uint64, signed []byte) error
	CheckpointCount(ctx context.Context) (uint64, error)
	CheckpointAt(ctx context.Context, n uint64) ([]byte, error)
	PublishIndex(ctx context.Context, first, end uint64, data []byte) error
	ReadIndex(ctx context.Context, fn func([]byte) error) error
}

// Params configures a Log.
type Params struct {
	Store  Store
	Signer note.Signer
	// VerifierKey is the signed-note verifier key matching Signer.
	VerifierKey  string
	PublicKeyPEM string
	// Origin names the log in checkpoints, e.g. "bulwark.audit/prod".
	Origin string
	// CheckpointEvery and CheckpointInterval: a checkpoint is made when the tree has grown by
	// CheckpointEvery records or CheckpointInterval has passed since the last one.
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	// BatchSize is the most messages applied per commit; 0 means 2000.
	BatchSize int
	// FetchWait bounds how long a fetch waits for messages; 0 means 100 ms.
	FetchWait time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Record is one leaf with its decoded content.
type Record struct {
	Index       uint64
	Subject     string
	Data        []byte
	LeafHash    []byte
	ReceiveTime time.Time
	Kind        string
	Message     proto.Message // nil for invalid records
	Invalid     string
}

// Log is the audit log.
type Log struct {
	p        Params
	tree     *merklelog.Tree
	verifier note.Verifier
	ix       *index

	deadLetters atomic.Uint64

	cpMu    sync.Mutex
	latest  *SignedCheckpoint
	cpCache map[uint64]SignedCheckpoint // by stream position
}

// SignedCheckpoint is a checkpoint with its signed note.
type SignedCheckpoint struct {
	checkpoint.Checkpoint
	Note []byte
}

// New opens the tree, checks it against the stream and the latest checkpoint, and loads
// the query index.
func New(ctx context.Context, p Params) (*Log, error) {
	switch {
	case p.Store == nil || p.Signer == nil:
		return nil, errors.New("auditlog: store and signer are required")
	case p.Origin == "":
		return nil, errors.New("auditlog: origin is required")
	case p.CheckpointEvery == 0 || p.CheckpointInterval <= 0:
		return nil, errors.New("auditlog: checkpoint every and interval must be positive")
	}
	if p.BatchSize <= 0 {
		p.BatchSize = 2000
	}
	if p.FetchWait <= 0 {
		p.FetchWait = 100 * time.Millisecond
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	v, err := note.NewVerifier(p.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("auditlog: verifier key: %w", err)
	}
	l := &Log{p: p, verifier: v, cpCache: map[uint64]SignedCheckpoint{}}
	l.tree, err = merklelog.Open(ctx, p.Store)
	if err != nil {
		return nil, err
	}
	size := l.tree.Size()
	_, last, err := p.Store.Bounds(ctx)
	if err != nil {
		return nil, err
	}
	if last < size {
		return nil, fmt.Errorf("%w: stream last sequence %d, tree size %d", ErrLogTruncated, last, size)
	}
	if n, err := p.Store.CheckpointCount(ctx); err != nil {
		return nil, err
	} else if n > 0 {
		cp, err := l.checkpointAt(ctx, n)
		if err != nil {
			return nil, err
		}
		if cp.Size > size {
			return nil, fmt.Errorf("%w: checkpoint at %d is beyond the tree size %d", ErrTreeMismatch, cp.Size, size)
		}
		root, err := l.tree.RootAt(ctx, cp.Size)
		if err != nil || string(root) != string(cp.Root) {
			return nil, fmt.Errorf("%w at tree size %d", ErrTreeMismatch, cp.Size)
		}
		l.latest = &cp
	}
	if err := l.loadIndex(ctx); err != nil {
		return nil, err
	}
	p.Logger.InfoContext(ctx, "audit log opened", "tree_size", size, "indexed", l.ix.end(), "origin", p.Origin)
	return l, nil
}

// DeadLetters counts messages dead-lettered by this process.
func (l *Log) DeadLetters() uint64 { return l.deadLetters.Load() }

// Size returns the committed tree size.
func (l *Log) Size() uint64 { return l.tree.Size() }

// loadIndex fills the query index from the stored index batches and rebuilds whatever they
// lack (a gap, a lost index stream) from the records themselves.
func (l *Log) loadIndex(ctx context.Context) error {
	size := l.tree.Size()
	first, _, err := l.p.Store.Bounds(ctx)
	if err != nil {
		return err
	}
	base := min(max(first, 1)-1, size) // records before the stream's first have expired
	l.ix = newIndex(base)
	var pending []IndexFields
	errStop := errors.New("stop")
	err = l.p.Store.ReadIndex(ctx, func(b []byte) error {
		pending = pending[:0]
		if err := decodeBatch(b, func(f IndexFields) {
			if f.Index >= base && f.Index < size {
				pending = append(pending, f)
			}
		}); err != nil {
			return err
		}
		if err := l.ix.add(pending); errors.Is(err, errIndexGap) {
			return errStop // the rest is rebuilt from the records
		} else if err != nil {
			return err
		}
		if l.ix.end() >= size {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		l.p.Logger.WarnContext(ctx, "index batches unreadable, rebuilding from records", "err", err)
		l.ix = newIndex(base)
	}
	from := l.ix.end()
	if from >= size {
		return nil
	}
	l.p.Logger.InfoContext(ctx, "rebuilding query index from records", "from", from, "to", size)
	var fs []IndexFields
	err = l.p.Store.Read(ctx, from+1, size, func(r RawRecord) error {
		kind, msg, _ := evidence.Decode(r.Subject, r.Data)
		fs = append(fs, fieldsOf(r.Seq-1, r.Time.UnixNano(), kind, msg))
		if len(fs) == 10000 {
			err := l.ix.add(fs)
			fs = fs[:0]
			return err
		}
		return nil
	})
	if err == nil {
		err = l.ix.add(fs)
	}
	if err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	return nil
}

// Run ingests until ctx is done, restarting the consumer after errors.
func (l *Log) Run(ctx context.Context) error {
	for {
		err := l.ingest(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.p.Logger.ErrorContext(ctx, "audit ingest interrupted; resuming from the tree state", "err", err)
		if rerr := l.tree.Rollback(); rerr != nil {
			return rerr
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (l *Log) ingest(ctx context.Context) error {
	src, err := l.p.Store.Consumer(ctx, l.tree.Size()+1)
	if err != nil {
		return err
	}
	for {
		msgs, err := src.Fetch(ctx, l.p.BatchSize, l.p.FetchWait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			if err := l.apply(ctx, msgs); err != nil {
				return err
			}
		}
		if err := l.maybeCheckpoint(ctx); err != nil {
			l.p.Logger.ErrorContext(ctx, "checkpoint failed", "err", err)
		}
	}
}

// apply appends a batch to the tree and commits it with its index batch and dead letters.
// Dead letters and index entries are stored before the tree state, so a crash in between
// replays them under the same message ids, which the streams drop as duplicates.
func (l *Log) apply(ctx context.Context, msgs []InMsg) error {
	next := l.tree.Staged() + 1
	first := next - 1
	var (
		fields []IndexFields
		dls    []OutMsg
		buf    []byte
		last   *InMsg
		gap    bool
	)
	for i := range msgs {
		m := &msgs[i]
		if m.Seq < next {
			continue // delivered again; already in the tree
		}
		if m.Seq > next {
			gap = true
			break
		}
		if _, err := l.tree.Append(merklelog.LeafHash(m.Data)); err != nil {
			return err
		}
		kind, msg, derr := evidence.Decode(m.Subject, m.Data)
		if derr != nil && m.Subject != evidence.SubjectDeadLetter {
			dl, err := deadLetter(m.RawRecord, derr.Error(), l.p.Now())
			if err != nil {
				return err
			}
			dls = append(dls, dl)
		}
		f := fieldsOf(m.Seq-1, m.Time.UnixNano(), kind, msg)
		fields = append(fields, f)
		buf = encodeEntry(buf, f)
		last = m
		next++
	}
	if last != nil {
		if len(dls) > 0 {
			if err := l.p.Store.PublishDeadLetters(ctx, dls); err != nil {
				return err
			}
			l.deadLetters.Add(uint64(len(dls)))
			l.p.Logger.WarnContext(ctx, "malformed audit messages dead-lettered", "count", len(dls))
		}
		if err := l.p.Store.PublishIndex(ctx, first, next-1, buf); err != nil {
			return err
		}
		if err := l.tree.Commit(ctx, last.Seq); err != nil {
			return err
		}
		if err := l.ix.add(fields); err != nil {
			return err
		}
		if err := last.Ack(); err != nil {
			l.p.Logger.WarnContext(ctx, "ack failed; messages will be skipped on redelivery", "err", err)
		}
	}
	if gap {
		return fmt.Errorf("%w: expected sequence %d", errGap, next)
	}
	return nil
}

// maybeCheckpoint signs and publishes a checkpoint when enough records or time passed.
func (l *Log) maybeCheckpoint(ctx context.Context) error {
	size := l.tree.Size()
	l.cpMu.Lock()
	latest := l.latest
	l.cpMu.Unlock()
	now := l.p.Now()
	if latest != nil {
		if size == latest.Size {
			return nil
		}
		if size-latest.Size < l.p.CheckpointEvery && now.Sub(latest.Time) < l.p.CheckpointInterval {
			return nil
		}
	} else if size == 0 {
		return nil
	}
	_, err := l.Checkpoint(ctx)
	return err
}

// Checkpoint signs the committed tree now and publishes the checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (SignedCheckpoint, error) {
	size, root := l.tree.Head()
	cp := checkpoint.Checkpoint{Origin: l.p.Origin, Size: size, Root: root, Time: l.p.Now().UTC()}
	signed, err := checkpoint.Sign(cp, l.p.Signer)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	if err := l.p.Store.PublishCheckpoint(ctx, cp.Size, signed); err != nil {
		return SignedCheckpoint{}, err
	}
	sc := SignedCheckpoint{Checkpoint: cp, Note: signed}
	l.cpMu.Lock()
	if l.latest == nil || l.latest.Size < cp.Size {
		l.latest = &sc
	}
	l.cpMu.Unlock()
	return sc, nil
}

func (l *Log) checkpointAt(ctx context.Context, n uint64) (SignedCheckpoint, error) {
	l.cpMu.Lock()
	c, ok := l.cpCache[n]
	l.cpMu.Unlock()
	if ok {
		return c, nil
	}
	b, err := l.p.Store.CheckpointAt(ctx, n)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	cp, err := checkpoint.Open(b, l.verifier, l.p.Origin)
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("stored checkpoint %d: %w", n, err)
	}
	c = SignedCheckpoint{Checkpoint: cp, Note: b}
	l.cpMu.Lock()
	if len(l.cpCache) > 100000 {
		clear(l.cpCache)
	}
	l.cpCache[n] = c
	l.cpMu.Unlock()
	return c, nil
}

// LatestCheckpoint returns the newest checkpoint.
func (l *Log) LatestCheckpoint(ctx context.Context) (SignedCheckpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.latest == nil {
		return SignedCheckpoint{}, ErrNoCheckpoint
	}
	return *l.latest, nil
}

// CheckpointAtLeast returns the first checkpoint whose tree size is at least size, found by
// binary search over the checkpoint stream (sizes grow with position).
func (l *Log) CheckpointAtLeast(ctx context.Context, size uint64) (SignedCheckpoint, error) {
	latest, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	if size > latest.Size {
		return SignedCheckpoint{}, fmt.Errorf("%w: tree size %d", ErrNoCheckpoint, size)
	}
	n, err := l.p.Store.CheckpointCount(ctx)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	var ferr error
	pos := sort.Search(int(n), func(i int) bool {
		c, err := l.checkpointAt(ctx, uint64(i)+1)
		if err != nil {
			ferr = err
			return true
		}
		return c.Size >= size
	})
	if ferr != nil {
		return SignedCheckpoint{}, ferr
	}
	if pos == int(n) {
		return latest, nil
	}
	return l.checkpointAt(ctx, uint64(pos)+1)
}

// ConsistencyProof proves size1 is a prefix of size2, which must be a checkpointed size.
func (l *Log) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 {
		return nil, fmt.Errorf("%w: from_size %d is larger than to_size %d", ErrInvalidArgument, size1, size2)
	}
	cp, err := l.CheckpointAtLeast(ctx, size2)
	if err != nil {
		return nil, err
	}
	if cp.Size != size2 {
		return nil, fmt.Errorf("%w: no checkpoint at tree size %d", ErrNotFound, size2)
	}
	return l.tree.ConsistencyProof(ctx, size1, size2)
}

// VerifierKey returns the signed-note verifier key and the PEM public key.
func (l *Log) VerifierKey() (string, string) { return l.p.VerifierKey, l.p.PublicKeyPEM }
