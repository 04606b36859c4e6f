// Package authz is Bulwark's permission table: which action every RPC of every
// Bulwark service needs, and which permissions the built-in roles hold. It is
// public so that every service (and the gateway) enforces the same table; the
// identity service decides custom roles, environments and MFA on top of it.
package authz

import (
	"slices"
	"sort"
	"strings"
)

// Actions that are not tied to one RPC.
const (
	// ActionLLMComplete is calling a model for a completion through the gateway.
	ActionLLMComplete = "llm.complete"
	// ActionLLMEmbed is calling a model for embeddings through the gateway.
	ActionLLMEmbed = "llm.embed"
	// ActionLLMModelsList is listing the models a caller may use.
	ActionLLMModelsList = "llm.models.list"
)

// Built-in role names.
const (
	RoleAdmin     = "admin"
	RoleApprover  = "approver"
	RoleDeveloper = "developer"
	RoleViewer    = "viewer"
	RoleApp       = "app"
	// RoleSystem is held by Bulwark's own services calling each other (the gateway
	// calling identity, ratelimit, redaction and router); never by people.
	RoleSystem = "system"
)

// Rule is what one RPC requires.
type Rule struct {
	// Procedure is the Connect procedure, e.g. "/bulwark.identity.v1.IdentityService/CreateApiKey".
	Procedure string
	// Action is the permission the caller must hold; empty when Public.
	Action string
	// Public RPCs need no credential (authentication itself, the audit public key).
	Public bool
	// Admin RPCs change configuration or access and are recorded as admin_action events.
	Admin bool
}

func r(svc, method, action string, admin bool) Rule {
	return Rule{Procedure: "/" + svc + "/" + method, Action: action, Admin: admin}
}

func public(svc, method string) Rule {
	return Rule{Procedure: "/" + svc + "/" + method, Public: true}
}

const (
	identitySvc  = "bulwark.identity.v1.IdentityService"
	policySvc    = "bulwark.identity.v1.PolicyService"
	promptSvc    = "bulwark.identity.v1.PromptService"
	changeSvc    = "bulwark.identity.v1.ChangeService"
	auditSvc     = "bulwark.audit.v1.AuditService"
	gatewaySvc   = "bulwark.gateway.v1.GatewayService"
	ratelimitSvc = "bulwark.ratelimit.v1.RateLimitService"
	redactionSvc = "bulwark.redaction.v1.RedactionService"
	routerSvc    = "bulwark.router.v1.RouterService"
)

// table lists every RPC of every Bulwark service. A test enumerates the proto
// descriptors and fails when an RPC is missing here.
var table = []Rule{
	public(identitySvc, "Authenticate"),
	r(identitySvc, "CreatePrincipal", "identity.principal.create", true),
	r(identitySvc, "GetPrincipal", "identity.principal.read", false),
	r(identitySvc, "ListPrincipals", "identity.principal.read", false),
	r(identitySvc, "UpdatePrincipal", "identity.principal.update", true),
	r(identitySvc, "DisablePrincipal", "identity.principal.disable", true),
	r(identitySvc, "CreateApiKey", "identity.apikey.create", true),
	r(identitySvc, "ListApiKeys", "identity.apikey.read", false),
	r(identitySvc, "RevokeApiKey", "identity.apikey.revoke", true),
	r(identitySvc, "RotateApiKey", "identity.apikey.rotate", true),
	r(identitySvc, "ListRoles", "identity.role.read", false),
	r(identitySvc, "PutRole", "identity.role.write", true),

	r(policySvc, "Authorize", "policy.authorize", false),
	r(policySvc, "GetPolicy", "policy.read", false),
	r(policySvc, "ListPolicyVersions", "policy.read", false),
	r(policySvc, "ValidatePolicy", "policy.validate", false),

	r(promptSvc, "GetPrompt", "prompt.read", false),
	r(promptSvc, "ListPrompts", "prompt.read", false),
	r(promptSvc, "ListPromptVersions", "prompt.read", false),

	r(changeSvc, "ProposeChange", "change.propose", true),
	r(changeSvc, "ApproveChange", "change.approve", true),
	r(changeSvc, "RejectChange", "change.reject", true),
	r(changeSvc, "AttachEvidence", "change.evidence", true),
	r(changeSvc, "PromoteChange", "change.promote", true),
	r(changeSvc, "BreakGlass", "change.break_glass", true),
	r(changeSvc, "GetChange", "change.read", false),
	r(changeSvc, "ListChanges", "change.read", false),

	r(auditSvc, "Query", "audit.read", false),
	r(auditSvc, "GetRecord", "audit.read", false),
	r(auditSvc, "GetCheckpoint", "audit.verify", false),
	r(auditSvc, "GetConsistencyProof", "audit.verify", false),
	public(auditSvc, "GetPublicKey"),
	r(auditSvc, "ExportEvidence", "audit.export", false),

	r(gatewaySvc, "ChatComplete", ActionLLMComplete, false),
	r(gatewaySvc, "StreamChatComplete", ActionLLMComplete, false),
	r(gatewaySvc, "ListModels", ActionLLMModelsList, false),

	r(ratelimitSvc, "Reserve", "ratelimit.reserve", false),
	r(ratelimitSvc, "ReserveBatch", "ratelimit.reserve", false),
	r(ratelimitSvc, "Settle", "ratelimit.reserve", false),
	r(ratelimitSvc, "Release", "ratelimit.reserve", false),
	r(ratelimitSvc, "GetUsage", "ratelimit.usage.read", false),
	r(ratelimitSvc, "ListAlerts", "ratelimit.alert.read", false),

	r(redactionSvc, "Redact", "redaction.use", false),
	r(redactionSvc, "Restore", "redaction.use", false),
	r(redactionSvc, "Inspect", "redaction.use", false),
	r(redactionSvc, "ListProfiles", "redaction.profile.read", false),

	r(routerSvc, "Complete", "router.complete", false),
	r(routerSvc, "StreamComplete", "router.complete", false),
	r(routerSvc, "Embed", "router.complete", false),
	r(routerSvc, "ListModels", "router.model.read", false),
	r(routerSvc, "ListProviders", "router.provider.read", false),
	r(routerSvc, "PutProvider", "router.provider.write", true),
	r(routerSvc, "SetProviderEnabled", "router.provider.disable", true),
	r(routerSvc, "ListRoutes", "router.route.read", false),
	r(routerSvc, "PutRoute", "router.route.write", true),
}

var byProcedure = func() map[string]Rule {
	m := make(map[string]Rule, len(table))
	for _, rule := range table {
		m[rule.Procedure] = rule
	}
	return m
}()

// RuleFor returns the rule of a procedure. An unknown procedure has no rule and
// must be refused.
func RuleFor(procedure string) (Rule, bool) {
	rule, ok := byProcedure[procedure]
	return rule, ok
}

// Rules returns every rule, sorted by procedure.
func Rules() []Rule {
	out := slices.Clone(table)
	sort.Slice(out, func(i, j int) bool { return out[i].Procedure < out[j].Procedure })
	return out
}

// Actions returns every distinct action named in the table plus the LLM actions.
func Actions() []string {
	seen := map[string]bool{ActionLLMComplete: true, ActionLLMEmbed: true, ActionLLMModelsList: true}
	for _, rule := range table {
		if rule.Action != "" {
			seen[rule.Action] = true
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Role is a named set of permissions.
type Role struct {
	Name        string
	Permissions []string
	Description string
}

var readOnly = []string{
	"identity.principal.read", "identity.apikey.read", "identity.role.read",
	"policy.read", "policy.validate", "prompt.read", "change.read",
	"audit.read", "audit.verify",
	"ratelimit.usage.read", "ratelimit.alert.read",
	"redaction.profile.read",
	"router.model.read", "router.provider.read", "router.route.read",
	ActionLLMModelsList,
}

var builtin = []Role{
	{Name: RoleAdmin, Permissions: []string{"*"}, Description: "Everything, including break-glass changes."},
	{Name: RoleApprover, Permissions: append(slices.Clone(readOnly),
		"change.approve", "change.reject", "change.evidence", "change.promote", "audit.export"),
		Description: "Approves, rejects and promotes changes proposed by others; reads everything."},
	{Name: RoleDeveloper, Permissions: append(slices.Clone(readOnly),
		ActionLLMComplete, ActionLLMEmbed, "change.propose", "change.evidence", "change.promote"),
		Description: "Calls models, proposes changes and promotes approved ones; reads everything."},
	{Name: RoleViewer, Permissions: slices.Clone(readOnly),
		Description: "Reads configuration, audit records and usage."},
	{Name: RoleApp, Permissions: []string{ActionLLMComplete, ActionLLMEmbed, ActionLLMModelsList, "prompt.read"},
		Description: "An application calling models through the gateway."},
	{Name: RoleSystem, Permissions: []string{
		"policy.authorize", "prompt.read", "identity.principal.read", "identity.role.read",
		"ratelimit.reserve", "redaction.use", "redaction.profile.read",
		"router.complete", "router.model.read", "router.provider.read", "router.route.read",
		ActionLLMModelsList,
	}, Description: "Bulwark's own services calling each other."},
}

// BuiltinRoles returns the built-in roles, in a fixed order.
func BuiltinRoles() []Role {
	out := make([]Role, len(builtin))
	for i, role := range builtin {
		out[i] = Role{Name: role.Name, Permissions: slices.Clone(role.Permissions), Description: role.Description}
	}
	return out
}

// Builtin returns a built-in role by name.
func Builtin(name string) (Role, bool) {
	for _, role := range builtin {
		if role.Name == name {
			return Role{Name: role.Name, Permissions: slices.Clone(role.Permissions), Description: role.Description}, true
		}
	}
	return Role{}, false
}

// IsBuiltin reports whether name is a built-in role.
func IsBuiltin(name string) bool {
	_, ok := Builtin(name)
	return ok
}

// Matches reports whether one permission grants an action. A permission is an
// action name, "*" for every action, or a prefix ending in ".*" ("change.*").
func Matches(permission, action string) bool {
	if permission == "*" || permission == action {
		return true
	}
	if prefix, ok := strings.CutSuffix(permission, ".*"); ok {
		return strings.HasPrefix(action, prefix+".")
	}
	return false
}

// Allows reports whether any of the permissions grants the action.
func Allows(permissions []string, action string) bool {
	for _, p := range permissions {
		if Matches(p, action) {
			return true
		}
	}
	return false
}
