// Package server adapts the router to the generated Connect handler: it converts
// between protobuf and domain types, maps sentinel errors to Connect codes, and
// publishes an audit event for every configuration change.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/router/internal/adminaudit"
	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/translate"
)

// KeyChecker reports whether a provider's key is readable in an environment.
type KeyChecker func(ctx context.Context, env, provider string) bool

// Params configure the handler.
type Params struct {
	Router  *routing.Router
	Catalog *catalog.Catalog
	Keys    KeyChecker
	Audit   *adminaudit.Publisher
	Logger  *slog.Logger
}

// Handler implements routerv1connect.RouterServiceHandler.
type Handler struct {
	p Params
}

var _ routerv1connect.RouterServiceHandler = (*Handler)(nil)

// New returns the handler.
func New(p Params) (*Handler, error) {
	if p.Router == nil || p.Catalog == nil || p.Keys == nil || p.Audit == nil {
		return nil, errors.New("server: router, catalog, keys and audit are required")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{p: p}, nil
}

// toConnect maps domain errors to Connect codes; unexpected errors are logged and hidden.
func (h *Handler) toConnect(ctx context.Context, err error) error {
	var code connect.Code
	switch {
	case errors.Is(err, catalog.ErrVendorRisk):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, routing.ErrNotAllowed):
		code = connect.CodePermissionDenied
	case errors.Is(err, routing.ErrInvalid), errors.Is(err, catalog.ErrInvalid), errors.Is(err, translate.ErrBadBody):
		code = connect.CodeInvalidArgument
	case errors.Is(err, routing.ErrUnknownModel), errors.Is(err, catalog.ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, routing.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, routing.ErrUnavailable), errors.Is(err, routing.ErrStreamBroken), errors.Is(err, adminaudit.ErrNotAudited):
		code = connect.CodeUnavailable
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	default:
		h.p.Logger.ErrorContext(ctx, "router internal error", "err", err)
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
	return connect.NewError(code, err)
}

func format(f routerv1.ApiFormat) routing.Format {
	switch f {
	case routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT:
		return routing.FormatOpenAIChat
	case routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES:
		return routing.FormatAnthropicMessages
	}
	return routing.FormatUnspecified
}

func callFrom(c *routerv1.Call) (routing.Call, error) {
	if c == nil {
		return routing.Call{}, fmt.Errorf("call is required: %w", routing.ErrInvalid)
	}
	return routing.Call{
		RequestID: c.RequestId, Environment: c.Environment, Format: format(c.Format), Body: c.Body,
		DataClasses: c.DataClasses, AllowedProviders: c.AllowedProviders,
		FirstByteTimeout: c.FirstByteTimeout.AsDuration(), TotalTimeout: c.TotalTimeout.AsDuration(),
	}, nil
}

func usage(u translate.Usage) *routerv1.Usage {
	return &routerv1.Usage{InputTokens: u.Input, OutputTokens: u.Output}
}

// Complete sends one non-streaming call.
func (h *Handler) Complete(ctx context.Context, req *connect.Request[routerv1.CompleteRequest]) (*connect.Response[routerv1.CompleteResponse], error) {
	call, err := callFrom(req.Msg.Call)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	res, err := h.p.Router.Complete(ctx, call)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&routerv1.CompleteResponse{
		Status: int32(res.Status), Body: res.Body, Provider: res.Provider, Deployment: res.Deployment,
		ModelServed: res.ModelServed, Usage: usage(res.Usage), Attempts: int32(res.Attempts),
		ProviderLatency: durationpb.New(res.ProviderLatency),
	}), nil
}

// StreamComplete relays a streamed call.
func (h *Handler) StreamComplete(ctx context.Context, req *connect.Request[routerv1.StreamCompleteRequest], stream *connect.ServerStream[routerv1.StreamCompleteResponse]) error {
	return h.Stream(ctx, req.Msg, stream.Send)
}

// Stream relays a streamed call to send, one message per provider event, for
// StreamComplete and for callers in the same process. The message is reused:
// it is valid only until send returns (a caller that keeps it copies it); an
// error is a Connect error, as StreamComplete's.
func (h *Handler) Stream(ctx context.Context, req *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error {
	call, err := callFrom(req.GetCall())
	if err != nil {
		return h.toConnect(ctx, err)
	}
	msg := &routerv1.StreamCompleteResponse{}
	_, err = h.p.Router.Stream(ctx, call, func(ev routing.StreamEvent) error {
		msg.Reset()
		msg.Event, msg.Data = ev.Name, ev.Data
		if ev.Head != nil {
			msg.Provider, msg.Deployment, msg.ModelServed, msg.Status = ev.Head.Provider, ev.Head.Deployment, ev.Head.ModelServed, int32(ev.Head.Status)
		}
		if ev.Usage != nil {
			msg.Usage = usage(*ev.Usage)
		}
		return send(msg)
	})
	if err != nil {
		return h.toConnect(ctx, err)
	}
	return nil
}

// Embed creates embeddings.
func (h *Handler) Embed(ctx context.Context, req *connect.Request[routerv1.EmbedRequest]) (*connect.Response[routerv1.EmbedResponse], error) {
	m := req.Msg
	res, err := h.p.Router.Embed(ctx, routing.EmbedCall{RequestID: m.RequestId, Environment: m.Environment, Body: m.Body,
		DataClasses: m.DataClasses, AllowedProviders: m.AllowedProviders})
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&routerv1.EmbedResponse{Status: int32(res.Status), Body: res.Body, Provider: res.Provider,
		ModelServed: res.ModelServed, Usage: usage(res.Usage)}), nil
}

// ListModels lists aliases with usable deployments.
func (h *Handler) ListModels(ctx context.Context, req *connect.Request[routerv1.ListModelsRequest]) (*connect.Response[routerv1.ListModelsResponse], error) {
	out := &routerv1.ListModelsResponse{}
	for _, rt := range h.p.Router.Models(ctx, req.Msg.Environment, h.p.Keys) {
		m := &routerv1.Model{Id: rt.Alias, OwnedBy: rt.Deployments[0].Provider}
		seen := map[string]bool{}
		for _, d := range rt.Deployments {
			if !seen[d.Provider] {
				seen[d.Provider] = true
				m.Providers = append(m.Providers, d.Provider)
			}
		}
		out.Models = append(out.Models, m)
	}
	return connect.NewResponse(out), nil
}

// ListProviders serves the subprocessor registry.
func (h *Handler) ListProviders(ctx context.Context, req *connect.Request[routerv1.ListProvidersRequest]) (*connect.Response[routerv1.ListProvidersResponse], error) {
	env := req.Msg.Environment
	out := &routerv1.ListProvidersResponse{}
	for _, p := range h.p.Catalog.Providers() {
		out.Providers = append(out.Providers, h.providerToProto(ctx, p, env))
	}
	return connect.NewResponse(out), nil
}

func (h *Handler) providerToProto(ctx context.Context, p catalog.Provider, env string) *routerv1.Provider {
	pp := ProviderToProto(p)
	pp.DaysUntilReportExpiry = int32(p.Vendor.DaysUntilExpiry(h.p.Catalog.Now()))
	pp.Routable = true
	if env != "" {
		pp.KeyAvailable = h.p.Keys(ctx, env, p.Name)
	}
	switch {
	case !p.Enabled:
		pp.Routable, pp.UnroutableReason = false, "provider disabled"
	default:
		if err := h.p.Catalog.CheckVendor(p, nil); err != nil {
			pp.Routable, pp.UnroutableReason = false, err.Error()
		} else if env != "" && !pp.KeyAvailable {
			pp.Routable, pp.UnroutableReason = false, "no key readable for environment "+env
		}
	}
	return pp
}

// ProviderToProto converts a provider (computed fields left zero).
func ProviderToProto(p catalog.Provider) *routerv1.Provider {
	v := p.Vendor
	var exp *timestamppb.Timestamp
	if !v.SOC2ReportExpiry.IsZero() {
		exp = timestamppb.New(v.SOC2ReportExpiry)
	}
	return &routerv1.Provider{
		Name: p.Name, Kind: routerv1.ProviderKind(p.Kind), BaseUrl: p.BaseURL, ApiVersion: p.APIVersion, Enabled: p.Enabled,
		Vendor: &routerv1.VendorFacts{LegalName: v.LegalName, Soc2ReportExpiry: exp, DpaSigned: v.DPASigned, BaaSigned: v.BAASigned,
			ZeroDataRetention: v.ZeroDataRetention, Regions: v.Regions, IncidentContact: v.IncidentContact, IncidentProcedureUrl: v.IncidentProcedureURL},
	}
}

// ProviderFromProto converts a provider.
func ProviderFromProto(pp *routerv1.Provider) catalog.Provider {
	if pp == nil {
		return catalog.Provider{}
	}
	p := catalog.Provider{Name: pp.Name, Kind: catalog.Kind(pp.Kind), BaseURL: pp.BaseUrl, APIVersion: pp.ApiVersion, Enabled: pp.Enabled}
	if pp.Kind < 0 || pp.Kind > routerv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI {
		p.Kind = catalog.KindUnspecified
	}
	if v := pp.Vendor; v != nil {
		p.Vendor = catalog.Vendor{LegalName: v.LegalName, DPASigned: v.DpaSigned, BAASigned: v.BaaSigned, ZeroDataRetention: v.ZeroDataRetention,
			Regions: v.Regions, IncidentContact: v.IncidentContact, IncidentProcedureURL: v.IncidentProcedureUrl}
		if v.Soc2ReportExpiry != nil {
			p.Vendor.SOC2ReportExpiry = v.Soc2ReportExpiry.AsTime()
		}
	}
	return p
}

// RouteToProto converts a route.
func RouteToProto(r catalog.Route) *routerv1.Route {
	out := &routerv1.Route{Alias: r.Alias, MaxAttempts: int32(r.MaxAttempts)}
	if r.FirstByteTimeout > 0 {
		out.FirstByteTimeout = durationpb.New(r.FirstByteTimeout)
	}
	if r.TotalTimeout > 0 {
		out.TotalTimeout = durationpb.New(r.TotalTimeout)
	}
	for _, d := range r.Deployments {
		out.Deployments = append(out.Deployments, &routerv1.Deployment{Name: d.Name, Provider: d.Provider, Model: d.Model,
			Weight: int32(d.Weight), Priority: int32(d.Priority), KeyNames: d.KeyNames})
	}
	return out
}

// RouteFromProto converts a route.
func RouteFromProto(r *routerv1.Route) catalog.Route {
	if r == nil {
		return catalog.Route{}
	}
	out := catalog.Route{Alias: r.Alias, MaxAttempts: int(r.MaxAttempts), FirstByteTimeout: r.FirstByteTimeout.AsDuration(), TotalTimeout: r.TotalTimeout.AsDuration()}
	for _, d := range r.Deployments {
		if d == nil {
			continue
		}
		out.Deployments = append(out.Deployments, catalog.Deployment{Name: d.Name, Provider: d.Provider, Model: d.Model,
			Weight: int(d.Weight), Priority: int(d.Priority), KeyNames: d.KeyNames})
	}
	return out
}

// actor names the caller of an admin RPC from the principal the authorization
// interceptor authenticated; request headers are never trusted for it. Without an
// authenticated caller (authentication disabled) the actor is "unknown".
func actor(ctx context.Context) (string, bool) {
	if c, ok := authz.CallerFrom(ctx); ok && c.GetPrincipal().GetId() != "" {
		return c.GetPrincipal().GetId(), c.GetMfa()
	}
	return "unknown", false
}

func (h *Handler) audit(ctx context.Context, action, target, reason string, before, after any) error {
	actor, mfa := actor(ctx)
	if _, err := h.p.Audit.Publish(ctx, adminaudit.Action{Actor: actor, MFA: mfa, Action: action, Target: target,
		Before: before, After: after, Reason: reason}); err != nil {
		return err
	}
	return nil
}

// PutProvider stores a provider and audits the change.
func (h *Handler) PutProvider(ctx context.Context, req *connect.Request[routerv1.PutProviderRequest]) (*connect.Response[routerv1.PutProviderResponse], error) {
	p := ProviderFromProto(req.Msg.Provider)
	prev, existed, err := h.p.Catalog.PutProvider(p)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	var before any
	if existed {
		before = prev
	}
	if err := h.audit(ctx, "router.provider.put", p.Name, "", before, p); err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&routerv1.PutProviderResponse{Provider: h.providerToProto(ctx, p, "")}), nil
}

// SetProviderEnabled toggles a provider and audits the change.
func (h *Handler) SetProviderEnabled(ctx context.Context, req *connect.Request[routerv1.SetProviderEnabledRequest]) (*connect.Response[routerv1.SetProviderEnabledResponse], error) {
	before, after, err := h.p.Catalog.SetProviderEnabled(req.Msg.Name, req.Msg.Enabled)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	action := "router.provider.disable"
	if req.Msg.Enabled {
		action = "router.provider.enable"
	}
	if err := h.audit(ctx, action, after.Name, req.Msg.Reason, before, after); err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&routerv1.SetProviderEnabledResponse{Provider: h.providerToProto(ctx, after, "")}), nil
}

// ListRoutes lists routes.
func (h *Handler) ListRoutes(_ context.Context, _ *connect.Request[routerv1.ListRoutesRequest]) (*connect.Response[routerv1.ListRoutesResponse], error) {
	out := &routerv1.ListRoutesResponse{}
	for _, r := range h.p.Catalog.Routes() {
		out.Routes = append(out.Routes, RouteToProto(r))
	}
	return connect.NewResponse(out), nil
}

// PutRoute stores a route and audits the change.
func (h *Handler) PutRoute(ctx context.Context, req *connect.Request[routerv1.PutRouteRequest]) (*connect.Response[routerv1.PutRouteResponse], error) {
	r := RouteFromProto(req.Msg.Route)
	prev, existed, err := h.p.Catalog.PutRoute(r)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	var before any
	if existed {
		before = prev
	}
	if err := h.audit(ctx, "router.route.put", r.Alias, "", before, r); err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&routerv1.PutRouteResponse{Route: RouteToProto(r)}), nil
}
