package auditlog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func deadLetter(r RawRecord, reason string, now time.Time) (OutMsg, error) {
	b, err := proto.Marshal(&auditv1.DeadLetter{Subject: r.Subject, Data: r.Data, Reason: reason, Time: timestamppb.New(now), StreamSequence: r.Seq})
	if err != nil {
		return OutMsg{}, fmt.Errorf("encode dead letter: %w", err)
	}
	return OutMsg{Subject: evidence.SubjectDeadLetter, ID: "dead_letter:" + strconv.FormatUint(r.Seq, 10), Data: b}, nil
}

func (l *Log) record(ctx context.Context, index uint64) (Record, error) {
	raw, err := l.p.Store.Get(ctx, index+1)
	if err != nil {
		return Record{}, err
	}
	return l.toRecord(ctx, raw)
}

func (l *Log) toRecord(ctx context.Context, raw RawRecord) (Record, error) {
	leaf, err := l.tree.LeafHash(ctx, raw.Seq-1)
	if err != nil {
		return Record{}, err
	}
	r := Record{Index: raw.Seq - 1, Subject: raw.Subject, Data: raw.Data, LeafHash: leaf, ReceiveTime: raw.Time}
	kind, msg, derr := evidence.Decode(raw.Subject, raw.Data)
	r.Kind, r.Message = kind, msg
	if derr != nil {
		r.Invalid = derr.Error()
	}
	return r, nil
}

// PageToken encodes the next leaf to consider.
func PageToken(next uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatUint(next, 10)))
}

// ParsePageToken decodes a page token; "" means the start.
func ParsePageToken(tok string) (uint64, error) {
	if tok == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 4 || string(b[:3]) != "v1:" {
		return 0, fmt.Errorf("%w: bad page token", ErrInvalidArgument)
	}
	n, err := strconv.ParseUint(string(b[3:]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad page token", ErrInvalidArgument)
	}
	return n, nil
}

// Query returns one page of matching records, oldest first, and the next page token.
func (l *Log) Query(ctx context.Context, f Filter) ([]Record, string, error) {
	switch {
	case f.Limit == 0:
		f.Limit = 100
	case f.Limit < 0 || f.Limit > 1000:
		return nil, "", fmt.Errorf("%w: page_size must be 0 to 1000", ErrInvalidArgument)
	}
	if f.Start != 0 && f.End != 0 && f.End < f.Start {
		return nil, "", fmt.Errorf("%w: end_time before start_time", ErrInvalidArgument)
	}
	idx, more := l.ix.query(f, l.tree.Size())
	// Read the page's records in parallel: each is one direct get, bound by round trips.
	got := make([]Record, len(idx))
	found := make([]bool, len(idx))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for n, i := range idx {
		g.Go(func() error {
			r, err := l.record(gctx, i)
			if errors.Is(err, ErrNotFound) {
				return nil // expired by retention
			}
			if err != nil {
				return err
			}
			got[n], found[n] = r, true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	recs := make([]Record, 0, len(idx))
	for n := range got {
		if found[n] {
			recs = append(recs, got[n])
		}
	}
	next := ""
	if more && len(idx) > 0 {
		next = PageToken(idx[len(idx)-1] + 1)
	}
	return recs, next, nil
}

// Proven is a record with its inclusion proof.
type Proven struct {
	Record     Record
	Checkpoint SignedCheckpoint
	Proof      [][]byte
}

// GetRecord returns a record by event id (when not empty) or index, with an inclusion proof
// against the first checkpoint of at least treeSize (the latest when 0).
func (l *Log) GetRecord(ctx context.Context, index uint64, eventID string, treeSize uint64) (Proven, error) {
	if eventID != "" {
		i, ok := l.ix.byEvent(eventID)
		if !ok {
			return Proven{}, fmt.Errorf("%w: no record with that event id", ErrNotFound)
		}
		index = i
	}
	if index >= l.tree.Size() {
		return Proven{}, fmt.Errorf("%w: no record at index %d", ErrNotFound, index)
	}
	var cp SignedCheckpoint
	var err error
	if treeSize == 0 {
		cp, err = l.LatestCheckpoint(ctx)
	} else {
		cp, err = l.CheckpointAtLeast(ctx, treeSize)
	}
	if err != nil {
		return Proven{}, err
	}
	if index >= cp.Size {
		return Proven{}, fmt.Errorf("%w: record %d is not in a checkpoint yet", ErrNoCheckpoint, index)
	}
	r, err := l.record(ctx, index)
	if err != nil {
		return Proven{}, err
	}
	p, err := l.tree.InclusionProof(ctx, index, cp.Size)
	if err != nil {
		return Proven{}, err
	}
	return Proven{Record: r, Checkpoint: cp, Proof: p}, nil
}

// ExportPlan is what an export will contain.
type ExportPlan struct {
	First, End uint64
	Proof      SignedCheckpoint
}

// PlanExport resolves a receive-time range (zero = open) to the leaves in the latest checkpoint.
func (l *Log) PlanExport(ctx context.Context, start, end time.Time) (ExportPlan, error) {
	if !start.IsZero() && !end.IsZero() && end.Before(start) {
		return ExportPlan{}, fmt.Errorf("%w: end_time before start_time", ErrInvalidArgument)
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return ExportPlan{}, err
	}
	var s, e int64
	if !start.IsZero() {
		s = start.UnixNano()
	}
	if !end.IsZero() {
		e = end.UnixNano()
	}
	lo, hi := l.ix.timeRange(s, e)
	hi = min(hi, cp.Size)
	lo = min(lo, hi)
	return ExportPlan{First: lo, End: hi, Proof: cp}, nil
}

// Export writes an evidence bundle for the plan to w, calling progress after each record.
func (l *Log) Export(ctx context.Context, plan ExportPlan, start, end time.Time, w io.Writer, progress func(done uint64)) error {
	cp := plan.Proof
	// Anchor checkpoints: the first covering the first record, the first covering the last,
	// and the proof checkpoint, chained by consistency proofs.
	var anchors []SignedCheckpoint
	add := func(c SignedCheckpoint) {
		if len(anchors) == 0 || anchors[len(anchors)-1].Size < c.Size {
			anchors = append(anchors, c)
		}
	}
	if plan.End > plan.First {
		for _, sz := range []uint64{plan.First + 1, plan.End} {
			c, err := l.CheckpointAtLeast(ctx, sz)
			if err != nil {
				return err
			}
			add(c)
		}
	}
	add(cp)
	h := evidence.Header{PublicKeyPEM: l.p.PublicKeyPEM}
	for i, a := range anchors {
		h.Checkpoints = append(h.Checkpoints, evidence.CheckpointEntry{TreeSize: a.Size, RootHash: a.Root, Time: a.Time, SignedNote: string(a.Note)})
		if i > 0 {
			p, err := l.tree.ConsistencyProof(ctx, anchors[i-1].Size, a.Size)
			if err != nil {
				return err
			}
			h.Consistency = append(h.Consistency, evidence.ConsistencyEntry{FromSize: anchors[i-1].Size, ToSize: a.Size, Proof: p})
		}
	}
	h.Manifest = evidence.Manifest{Format: evidence.Format, Origin: l.p.Origin, StartTime: start.UTC(), EndTime: end.UTC(),
		FirstIndex: plan.First, EndIndex: plan.End, ProofTreeSize: cp.Size, Created: l.p.Now().UTC(), VerifierKey: l.p.VerifierKey}
	mnote, err := note.Sign(&note.Note{Text: h.Manifest.NoteText()}, l.p.Signer)
	if err != nil {
		return fmt.Errorf("sign manifest: %w", err)
	}
	h.ManifestNote = mnote
	bw := evidence.NewWriter(w)
	if err := bw.WriteHeader(h); err != nil {
		return err
	}
	if plan.End > plan.First {
		_, last, err := l.p.Store.Bounds(ctx)
		if err != nil {
			return err
		}
		var done uint64
		err = l.p.Store.Read(ctx, plan.First+1, min(plan.End, last), func(raw RawRecord) error {
			r, err := l.toRecord(ctx, raw)
			if err != nil {
				return err
			}
			er := &evidence.Record{Index: r.Index, Subject: r.Subject, ReceiveTime: r.ReceiveTime.UTC(), Kind: r.Kind, Data: r.Data, LeafHash: r.LeafHash, Invalid: r.Invalid}
			if r.Message != nil {
				js, err := protojson.Marshal(r.Message)
				if err != nil {
					return fmt.Errorf("encode record %d: %w", r.Index, err)
				}
				var c bytes.Buffer
				if err := json.Compact(&c, js); err != nil {
					return fmt.Errorf("encode record %d: %w", r.Index, err)
				}
				er.Event = c.Bytes()
			}
			p, err := l.tree.InclusionProof(ctx, r.Index, cp.Size)
			if err != nil {
				return err
			}
			er.InclusionProof = evidence.JoinProof(p)
			if err := bw.WriteRecord(er); err != nil {
				return err
			}
			done++
			if progress != nil && (done%1000 == 0 || r.Index+1 == plan.End) {
				progress(done)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return bw.Close()
}
