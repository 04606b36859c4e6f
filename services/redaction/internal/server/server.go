// Package server adapts the redaction engine to the generated Connect
// handler: it converts messages, validates limits and maps the engine's
// sentinel errors to Connect codes. Error messages never carry input text.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

// Limits bound one call's work.
type Limits struct {
	// MaxSegments per Redact call.
	MaxSegments int
	// MaxTextBytes across all texts of one call.
	MaxTextBytes int
	// MaxTokenMap entries per Restore call.
	MaxTokenMap int
}

// Params configures the handler.
type Params struct {
	Engine *engine.Engine
	Logger *slog.Logger
	Limits Limits
}

// Server implements redactionv1connect.RedactionServiceHandler.
type Server struct {
	eng    *engine.Engine
	log    *slog.Logger
	limits Limits
}

var _ redactionv1connect.RedactionServiceHandler = (*Server)(nil)

// ErrInvalidParams means New was called without an engine or logger.
var ErrInvalidParams = errors.New("invalid redaction server params")

// New returns the handler implementation.
func New(p Params) (*Server, error) {
	if p.Engine == nil || p.Logger == nil {
		return nil, fmt.Errorf("%w: Engine and Logger are required", ErrInvalidParams)
	}
	l := p.Limits
	if l.MaxSegments <= 0 {
		l.MaxSegments = 1024
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = 8 << 20
	}
	if l.MaxTokenMap <= 0 {
		l.MaxTokenMap = 100000
	}
	return &Server{eng: p.Engine, log: p.Logger, limits: l}, nil
}

// Redact detects and applies the profile's actions to the request's segments.
func (s *Server) Redact(ctx context.Context, req *connect.Request[redactionv1.RedactRequest]) (*connect.Response[redactionv1.RedactResponse], error) {
	m := req.Msg
	if len(m.GetSegments()) > s.limits.MaxSegments {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("too many segments (max %d)", s.limits.MaxSegments))
	}
	segs := make([]engine.Segment, len(m.GetSegments()))
	total := 0
	for i, sg := range m.GetSegments() {
		segs[i] = engine.Segment{ID: sg.GetId(), Text: sg.GetText()}
		total += len(sg.GetText())
	}
	if total > s.limits.MaxTextBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("texts exceed %d bytes", s.limits.MaxTextBytes))
	}
	r := engine.RedactRequest{Segments: segs, ProfileName: m.GetProfileName(), Tenant: m.GetTenant()}
	if m.GetProfile() != nil {
		p := ProfileFromProto(m.GetProfile())
		r.Profile = &p
	}
	res, err := s.eng.Redact(r)
	if err != nil {
		return nil, s.mapErr(ctx, err)
	}
	out := &redactionv1.RedactResponse{
		Segments:       make([]*redactionv1.Segment, len(res.Segments)),
		Findings:       findingsToProto(res.Findings),
		TokenMap:       make([]*redactionv1.TokenMapEntry, len(res.TokenMap)),
		Blocked:        res.Blocked,
		BlockReasons:   res.BlockReasons,
		DataClasses:    res.DataClasses,
		InjectionScore: res.InjectionScore,
	}
	for i, sg := range res.Segments {
		out.Segments[i] = &redactionv1.Segment{Id: sg.ID, Text: sg.Text}
	}
	for i, e := range res.TokenMap {
		out.TokenMap[i] = &redactionv1.TokenMapEntry{Placeholder: e.Placeholder, Original: e.Original, EntityType: e.EntityType}
	}
	return connect.NewResponse(out), nil
}

// Restore puts originals back for the placeholders in the token map.
func (s *Server) Restore(_ context.Context, req *connect.Request[redactionv1.RestoreRequest]) (*connect.Response[redactionv1.RestoreResponse], error) {
	m := req.Msg
	if len(m.GetTokenMap()) > s.limits.MaxTokenMap {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("token map too large (max %d)", s.limits.MaxTokenMap))
	}
	if len(m.GetText()) > s.limits.MaxTextBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("text exceeds %d bytes", s.limits.MaxTextBytes))
	}
	entries := make([]engine.TokenMapEntry, len(m.GetTokenMap()))
	for i, e := range m.GetTokenMap() {
		entries[i] = engine.TokenMapEntry{Placeholder: e.GetPlaceholder(), Original: e.GetOriginal(), EntityType: e.GetEntityType()}
	}
	text, n := engine.Restore(m.GetText(), engine.NewTokenMap(entries))
	return connect.NewResponse(&redactionv1.RestoreResponse{Text: text, Restored: int32(n)}), nil
}

// Inspect reports findings without changing the text.
func (s *Server) Inspect(ctx context.Context, req *connect.Request[redactionv1.InspectRequest]) (*connect.Response[redactionv1.InspectResponse], error) {
	m := req.Msg
	if len(m.GetText()) > s.limits.MaxTextBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("text exceeds %d bytes", s.limits.MaxTextBytes))
	}
	res, err := s.eng.Inspect(m.GetText(), m.GetProfileName())
	if err != nil {
		return nil, s.mapErr(ctx, err)
	}
	return connect.NewResponse(&redactionv1.InspectResponse{
		Findings:       findingsToProto(res.Findings),
		DataClasses:    res.DataClasses,
		InjectionScore: res.InjectionScore,
	}), nil
}

// ListProfiles lists the configured profiles.
func (s *Server) ListProfiles(context.Context, *connect.Request[redactionv1.ListProfilesRequest]) (*connect.Response[redactionv1.ListProfilesResponse], error) {
	ps := s.eng.Profiles()
	out := &redactionv1.ListProfilesResponse{Profiles: make([]*redactionv1.Profile, len(ps))}
	for i, p := range ps {
		out.Profiles[i] = ProfileToProto(p)
	}
	return connect.NewResponse(out), nil
}

func (s *Server) mapErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, engine.ErrUnknownProfile):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, engine.ErrInvalidProfile):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	s.log.ErrorContext(ctx, "redaction failed", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

func findingsToProto(fs []engine.Finding) []*redactionv1.Finding {
	out := make([]*redactionv1.Finding, len(fs))
	for i, f := range fs {
		out[i] = &redactionv1.Finding{
			SegmentId: f.Segment, EntityType: f.EntityType, Start: int32(f.Start), End: int32(f.End), Rule: f.Rule,
			Score: f.Score, DataClass: f.DataClass, Action: redactionv1.Action(f.Action), Replacement: f.Replacement,
		}
	}
	return out
}

// ProfileFromProto converts a wire profile.
func ProfileFromProto(p *redactionv1.Profile) engine.Profile {
	out := engine.Profile{
		Name: p.GetName(), Description: p.GetDescription(), DefaultAction: engine.Action(p.GetDefaultAction()),
		MinScore: p.GetMinScore(), BlockInjectionScore: p.GetBlockInjectionScore(), Actions: map[string]engine.Action{},
	}
	for k, v := range p.GetActions() {
		out.Actions[k] = engine.Action(v)
	}
	for _, r := range p.GetCustomRules() {
		out.CustomRules = append(out.CustomRules, engine.CustomRule{EntityType: r.GetEntityType(), Pattern: r.GetPattern(),
			Terms: r.GetTerms(), DataClass: r.GetDataClass(), Score: r.GetScore()})
	}
	return out
}

// ProfileToProto converts a profile for the wire.
func ProfileToProto(p engine.Profile) *redactionv1.Profile {
	out := &redactionv1.Profile{
		Name: p.Name, Description: p.Description, DefaultAction: redactionv1.Action(p.DefaultAction),
		MinScore: p.MinScore, BlockInjectionScore: p.BlockInjectionScore, Actions: map[string]redactionv1.Action{},
	}
	for k, v := range p.Actions {
		out.Actions[k] = redactionv1.Action(v)
	}
	for _, r := range p.CustomRules {
		out.CustomRules = append(out.CustomRules, &redactionv1.CustomRule{EntityType: r.EntityType, Pattern: r.Pattern,
			Terms: r.Terms, DataClass: r.DataClass, Score: r.Score})
	}
	return out
}
