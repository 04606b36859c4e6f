package server

import (
	"context"
	"time"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
)

type identityHandler struct{ *handlers }

var _ identityv1connect.IdentityServiceHandler = (*identityHandler)(nil)

func (h *identityHandler) Authenticate(ctx context.Context, req *connect.Request[identityv1.AuthenticateRequest]) (*connect.Response[identityv1.AuthenticateResponse], error) {
	res, err := h.svc.Authenticate(ctx, req.Msg.Credential, req.Msg.Environment)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(res), nil
}

func (h *identityHandler) CreatePrincipal(ctx context.Context, req *connect.Request[identityv1.CreatePrincipalRequest]) (*connect.Response[identityv1.CreatePrincipalResponse], error) {
	p, err := h.svc.CreatePrincipal(ctx, actorFrom(ctx), req.Msg.Principal)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.CreatePrincipalResponse{Principal: p}), nil
}

func (h *identityHandler) GetPrincipal(ctx context.Context, req *connect.Request[identityv1.GetPrincipalRequest]) (*connect.Response[identityv1.GetPrincipalResponse], error) {
	p, err := h.svc.GetPrincipal(ctx, req.Msg.Id)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetPrincipalResponse{Principal: p}), nil
}

func (h *identityHandler) ListPrincipals(ctx context.Context, req *connect.Request[identityv1.ListPrincipalsRequest]) (*connect.Response[identityv1.ListPrincipalsResponse], error) {
	ps, next, err := h.svc.ListPrincipals(ctx, req.Msg.Kind, req.Msg.TeamId, req.Msg.PageSize, req.Msg.PageToken)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListPrincipalsResponse{Principals: ps, NextPageToken: next}), nil
}

func (h *identityHandler) UpdatePrincipal(ctx context.Context, req *connect.Request[identityv1.UpdatePrincipalRequest]) (*connect.Response[identityv1.UpdatePrincipalResponse], error) {
	p, err := h.svc.UpdatePrincipal(ctx, actorFrom(ctx), req.Msg.Principal, req.Msg.UpdateMask)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.UpdatePrincipalResponse{Principal: p}), nil
}

func (h *identityHandler) DisablePrincipal(ctx context.Context, req *connect.Request[identityv1.DisablePrincipalRequest]) (*connect.Response[identityv1.DisablePrincipalResponse], error) {
	p, err := h.svc.DisablePrincipal(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Reason)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.DisablePrincipalResponse{Principal: p}), nil
}

func (h *identityHandler) CreateApiKey(ctx context.Context, req *connect.Request[identityv1.CreateApiKeyRequest]) (*connect.Response[identityv1.CreateApiKeyResponse], error) {
	m := req.Msg
	key, secret, err := h.svc.CreateApiKey(ctx, actorFrom(ctx), m.PrincipalId, m.Environment, m.Name, m.Scopes, time.Duration(m.TtlSeconds)*time.Second)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.CreateApiKeyResponse{ApiKey: key, Secret: secret}), nil
}

func (h *identityHandler) ListApiKeys(ctx context.Context, req *connect.Request[identityv1.ListApiKeysRequest]) (*connect.Response[identityv1.ListApiKeysResponse], error) {
	m := req.Msg
	keys, next, err := h.svc.ListApiKeys(ctx, m.PrincipalId, m.Environment, m.IncludeRevoked, m.PageSize, m.PageToken)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListApiKeysResponse{ApiKeys: keys, NextPageToken: next}), nil
}

func (h *identityHandler) RevokeApiKey(ctx context.Context, req *connect.Request[identityv1.RevokeApiKeyRequest]) (*connect.Response[identityv1.RevokeApiKeyResponse], error) {
	key, err := h.svc.RevokeApiKey(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Reason)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.RevokeApiKeyResponse{ApiKey: key}), nil
}

func (h *identityHandler) RotateApiKey(ctx context.Context, req *connect.Request[identityv1.RotateApiKeyRequest]) (*connect.Response[identityv1.RotateApiKeyResponse], error) {
	old, successor, secret, err := h.svc.RotateApiKey(ctx, actorFrom(ctx), req.Msg.Id, time.Duration(req.Msg.GraceSeconds)*time.Second)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.RotateApiKeyResponse{OldApiKey: old, NewApiKey: successor, Secret: secret}), nil
}

func (h *identityHandler) ListRoles(ctx context.Context, _ *connect.Request[identityv1.ListRolesRequest]) (*connect.Response[identityv1.ListRolesResponse], error) {
	roles, err := h.svc.ListRoles(ctx)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListRolesResponse{Roles: roles}), nil
}

func (h *identityHandler) PutRole(ctx context.Context, req *connect.Request[identityv1.PutRoleRequest]) (*connect.Response[identityv1.PutRoleResponse], error) {
	role, err := h.svc.PutRole(ctx, actorFrom(ctx), req.Msg.Role)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.PutRoleResponse{Role: role}), nil
}

type policyHandler struct{ *handlers }

var _ identityv1connect.PolicyServiceHandler = (*policyHandler)(nil)

func (h *policyHandler) Authorize(ctx context.Context, req *connect.Request[identityv1.AuthorizeRequest]) (*connect.Response[identityv1.AuthorizeResponse], error) {
	d, err := h.svc.Authorize(ctx, req.Msg)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(d), nil
}

func (h *policyHandler) GetPolicy(ctx context.Context, req *connect.Request[identityv1.GetPolicyRequest]) (*connect.Response[identityv1.GetPolicyResponse], error) {
	p, err := h.svc.GetPolicy(ctx, req.Msg.Environment, req.Msg.Version)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetPolicyResponse{Policy: p}), nil
}

func (h *policyHandler) ListPolicyVersions(ctx context.Context, req *connect.Request[identityv1.ListPolicyVersionsRequest]) (*connect.Response[identityv1.ListPolicyVersionsResponse], error) {
	vs, err := h.svc.ListPolicyVersions(ctx, req.Msg.Environment, req.Msg.IncludeDocuments)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListPolicyVersionsResponse{Versions: vs}), nil
}

func (h *policyHandler) ValidatePolicy(_ context.Context, req *connect.Request[identityv1.ValidatePolicyRequest]) (*connect.Response[identityv1.ValidatePolicyResponse], error) {
	valid, problems, hash := h.svc.ValidatePolicy(req.Msg.Document)
	return connect.NewResponse(&identityv1.ValidatePolicyResponse{Valid: valid, Problems: problems, ContentHash: hash}), nil
}

type promptHandler struct{ *handlers }

var _ identityv1connect.PromptServiceHandler = (*promptHandler)(nil)

func (h *promptHandler) GetPrompt(ctx context.Context, req *connect.Request[identityv1.GetPromptRequest]) (*connect.Response[identityv1.GetPromptResponse], error) {
	p, err := h.svc.GetPrompt(ctx, req.Msg.Ref, req.Msg.Environment)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetPromptResponse{Prompt: p}), nil
}

func (h *promptHandler) ListPrompts(ctx context.Context, req *connect.Request[identityv1.ListPromptsRequest]) (*connect.Response[identityv1.ListPromptsResponse], error) {
	ps, next, err := h.svc.ListPrompts(ctx, req.Msg.PageSize, req.Msg.PageToken)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListPromptsResponse{Prompts: ps, NextPageToken: next}), nil
}

func (h *promptHandler) ListPromptVersions(ctx context.Context, req *connect.Request[identityv1.ListPromptVersionsRequest]) (*connect.Response[identityv1.ListPromptVersionsResponse], error) {
	vs, err := h.svc.ListPromptVersions(ctx, req.Msg.PromptId)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListPromptVersionsResponse{Versions: vs}), nil
}

type changeHandler struct{ *handlers }

var _ identityv1connect.ChangeServiceHandler = (*changeHandler)(nil)

func (h *changeHandler) ProposeChange(ctx context.Context, req *connect.Request[identityv1.ProposeChangeRequest]) (*connect.Response[identityv1.ProposeChangeResponse], error) {
	c, err := h.svc.ProposeChange(ctx, actorFrom(ctx), req.Msg)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ProposeChangeResponse{Change: c}), nil
}

func (h *changeHandler) ApproveChange(ctx context.Context, req *connect.Request[identityv1.ApproveChangeRequest]) (*connect.Response[identityv1.ApproveChangeResponse], error) {
	c, err := h.svc.ApproveChange(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Comment)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ApproveChangeResponse{Change: c}), nil
}

func (h *changeHandler) RejectChange(ctx context.Context, req *connect.Request[identityv1.RejectChangeRequest]) (*connect.Response[identityv1.RejectChangeResponse], error) {
	c, err := h.svc.RejectChange(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Comment)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.RejectChangeResponse{Change: c}), nil
}

func (h *changeHandler) AttachEvidence(ctx context.Context, req *connect.Request[identityv1.AttachEvidenceRequest]) (*connect.Response[identityv1.AttachEvidenceResponse], error) {
	c, err := h.svc.AttachEvidence(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Evidence)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.AttachEvidenceResponse{Change: c}), nil
}

func (h *changeHandler) PromoteChange(ctx context.Context, req *connect.Request[identityv1.PromoteChangeRequest]) (*connect.Response[identityv1.PromoteChangeResponse], error) {
	c, err := h.svc.PromoteChange(ctx, actorFrom(ctx), req.Msg.Id, req.Msg.Environment)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.PromoteChangeResponse{Change: c}), nil
}

func (h *changeHandler) BreakGlass(ctx context.Context, req *connect.Request[identityv1.BreakGlassRequest]) (*connect.Response[identityv1.BreakGlassResponse], error) {
	c, err := h.svc.BreakGlass(ctx, actorFrom(ctx), req.Msg.Change, req.Msg.Environment, req.Msg.Justification)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.BreakGlassResponse{Change: c}), nil
}

func (h *changeHandler) GetChange(ctx context.Context, req *connect.Request[identityv1.GetChangeRequest]) (*connect.Response[identityv1.GetChangeResponse], error) {
	c, err := h.svc.GetChange(ctx, req.Msg.Id)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.GetChangeResponse{Change: c}), nil
}

func (h *changeHandler) ListChanges(ctx context.Context, req *connect.Request[identityv1.ListChangesRequest]) (*connect.Response[identityv1.ListChangesResponse], error) {
	cs, next, err := h.svc.ListChanges(ctx, req.Msg.State, req.Msg.Kind, req.Msg.PageSize, req.Msg.PageToken)
	if err != nil {
		return nil, h.toConnect(ctx, err)
	}
	return connect.NewResponse(&identityv1.ListChangesResponse{Changes: cs, NextPageToken: next}), nil
}
