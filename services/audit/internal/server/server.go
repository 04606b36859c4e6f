// Package server adapts the audit log to the generated Connect handler and maps the
// domain's sentinel errors to Connect codes.
package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Params configures the handler.
type Params struct {
	Log    *auditlog.Log
	Logger *slog.Logger
}

// Server implements auditv1connect.AuditServiceHandler.
type Server struct {
	log *auditlog.Log
	lg  *slog.Logger
}

var _ auditv1connect.AuditServiceHandler = (*Server)(nil)

// New returns the handler implementation.
func New(p Params) (*Server, error) {
	if p.Log == nil {
		return nil, errors.New("server: nil audit log")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{log: p.Log, lg: p.Logger}, nil
}

func (s *Server) fail(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, auditlog.ErrInvalidArgument):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, auditlog.ErrNotFound), errors.Is(err, merklelog.ErrOutOfRange):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, auditlog.ErrNoCheckpoint):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeCanceled, err)
	}
	s.lg.ErrorContext(ctx, "audit request failed", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

func toTime(ts *timestamppb.Timestamp) int64 {
	if ts == nil {
		return 0
	}
	return ts.AsTime().UnixNano()
}

// Query pages through records.
func (s *Server) Query(ctx context.Context, req *connect.Request[auditv1.QueryRequest]) (*connect.Response[auditv1.QueryResponse], error) {
	m := req.Msg
	after, err := auditlog.ParsePageToken(m.GetPageToken())
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	recs, next, err := s.log.Query(ctx, auditlog.Filter{
		Start: toTime(m.GetStartTime()), End: toTime(m.GetEndTime()), Principal: m.GetPrincipalId(), Team: m.GetTeamId(),
		APIKey: m.GetApiKeyId(), Model: m.GetModel(), Provider: m.GetProvider(), Kind: m.GetKind(), RequestID: m.GetRequestId(),
		Decision: m.GetDecision(), After: after, Limit: int(m.GetPageSize()),
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &auditv1.QueryResponse{NextPageToken: next}
	for _, r := range recs {
		out.Records = append(out.Records, ToProto(r))
	}
	return connect.NewResponse(out), nil
}

// ToProto converts a domain record to the API message.
func ToProto(r auditlog.Record) *auditv1.Record {
	out := &auditv1.Record{Index: r.Index, Subject: r.Subject, Data: r.Data, LeafHash: r.LeafHash, ReceiveTime: timestamppb.New(r.ReceiveTime)}
	switch m := r.Message.(type) {
	case *auditv1.AuditEvent:
		out.Event = m
	case *ratelimitv1.AnomalyEvent:
		out.Alert = &auditv1.Alert{Anomaly: m}
	case *ratelimitv1.LimitExceededEvent:
		out.Alert = &auditv1.Alert{LimitExceeded: m}
	}
	return out
}

func cpProto(c auditlog.SignedCheckpoint) *auditv1.Checkpoint {
	return &auditv1.Checkpoint{Origin: c.Origin, TreeSize: c.Size, RootHash: c.Root, Time: timestamppb.New(c.Time), SignedNote: string(c.Note)}
}

// GetRecord returns a record with its inclusion proof.
func (s *Server) GetRecord(ctx context.Context, req *connect.Request[auditv1.GetRecordRequest]) (*connect.Response[auditv1.GetRecordResponse], error) {
	p, err := s.log.GetRecord(ctx, req.Msg.GetIndex(), req.Msg.GetEventId(), req.Msg.GetTreeSize())
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return connect.NewResponse(&auditv1.GetRecordResponse{Record: ToProto(p.Record), Checkpoint: cpProto(p.Checkpoint), InclusionProof: p.Proof}), nil
}

// GetCheckpoint returns the latest checkpoint or the first of at least a size.
func (s *Server) GetCheckpoint(ctx context.Context, req *connect.Request[auditv1.GetCheckpointRequest]) (*connect.Response[auditv1.GetCheckpointResponse], error) {
	var c auditlog.SignedCheckpoint
	var err error
	if n := req.Msg.GetMinTreeSize(); n > 0 {
		c, err = s.log.CheckpointAtLeast(ctx, n)
	} else {
		c, err = s.log.LatestCheckpoint(ctx)
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return connect.NewResponse(&auditv1.GetCheckpointResponse{Checkpoint: cpProto(c)}), nil
}

// GetConsistencyProof proves one tree size is a prefix of a checkpointed larger one.
func (s *Server) GetConsistencyProof(ctx context.Context, req *connect.Request[auditv1.GetConsistencyProofRequest]) (*connect.Response[auditv1.GetConsistencyProofResponse], error) {
	p, err := s.log.ConsistencyProof(ctx, req.Msg.GetFromSize(), req.Msg.GetToSize())
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return connect.NewResponse(&auditv1.GetConsistencyProofResponse{Proof: p}), nil
}

// GetPublicKey returns the checkpoint verification key.
func (s *Server) GetPublicKey(context.Context, *connect.Request[auditv1.GetPublicKeyRequest]) (*connect.Response[auditv1.GetPublicKeyResponse], error) {
	vk, pem := s.log.VerifierKey()
	return connect.NewResponse(&auditv1.GetPublicKeyResponse{VerifierKey: vk, PublicKeyPem: pem}), nil
}

// chunkWriter sends the bundle in chunks of up to 256 KiB with progress.
type chunkWriter struct {
	stream *connect.ServerStream[auditv1.ExportEvidenceResponse]
	buf    []byte
	done   uint64
	total  uint64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) >= 256<<10 {
		return len(p), w.flush()
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.stream.Send(&auditv1.ExportEvidenceResponse{Chunk: w.buf, RecordsDone: w.done, RecordsTotal: w.total})
	w.buf = nil
	return err
}

// ExportEvidence streams an evidence bundle.
func (s *Server) ExportEvidence(ctx context.Context, req *connect.Request[auditv1.ExportEvidenceRequest], stream *connect.ServerStream[auditv1.ExportEvidenceResponse]) error {
	var st, en time.Time
	if ts := req.Msg.GetStartTime(); ts != nil {
		st = ts.AsTime()
	}
	if ts := req.Msg.GetEndTime(); ts != nil {
		en = ts.AsTime()
	}
	plan, err := s.log.PlanExport(ctx, st, en)
	if err != nil {
		return s.fail(ctx, err)
	}
	w := &chunkWriter{stream: stream, total: plan.End - plan.First}
	if err := s.log.Export(ctx, plan, st, en, w, func(done uint64) { w.done = done }); err != nil {
		return s.fail(ctx, err)
	}
	if err := w.flush(); err != nil {
		return err
	}
	return stream.Send(&auditv1.ExportEvidenceResponse{RecordsDone: w.total, RecordsTotal: w.total})
}
