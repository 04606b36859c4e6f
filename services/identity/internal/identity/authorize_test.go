package identity_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

func authorize(t testing.TB, svc *identity.Service, e *env, p *identityv1.Principal, action string, res *identityv1.Resource, mfa bool) *identityv1.AuthorizeResponse {
	t.Helper()
	d, err := svc.Authorize(e.ctx, &identityv1.AuthorizeRequest{PrincipalId: p.Id, Action: action, Resource: res, Mfa: mfa})
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	return d
}

func TestAuthorize_DevDefaultAllowsModelUseByPermittedRoles(t *testing.T) {
	e := newEnv(t)
	dev := e.person("developer")
	viewer := e.person("viewer")
	d := authorize(t, e.svc, e, dev, "llm.complete", &identityv1.Resource{Model: "gpt-4o", Environment: "dev"}, false)
	if !d.Allowed || d.PolicyVersion != "0" || d.Obligations.RedactionProfile != "default" ||
		d.Obligations.RateLimitFailureMode != identityv1.FailureMode_FAILURE_MODE_OPEN || len(d.Obligations.Limits) != 1 {
		t.Fatalf("decision = %v", d)
	}
	if d := authorize(t, e.svc, e, viewer, "llm.complete", &identityv1.Resource{Model: "gpt-4o", Environment: "dev"}, false); d.Allowed {
		t.Fatal("viewer may call models")
	}
	// prod has no policy yet: closed.
	if d := authorize(t, e.svc, e, dev, "llm.complete", &identityv1.Resource{Model: "gpt-4o", Environment: "prod"}, false); d.Allowed {
		t.Fatal("prod without a policy allowed a call")
	}
	// Financial data only to zero-retention providers in the dev default.
	d = authorize(t, e.svc, e, dev, "llm.complete", &identityv1.Resource{Model: "gpt-4o", Environment: "dev", DataClasses: []string{"PII.FINANCIAL"}}, false)
	if !d.Allowed || strings.Join(d.Obligations.AllowedProviders, ",") != "anthropic,simulator" {
		t.Fatalf("decision = %v", d)
	}
}

func TestAuthorize_DeniesOutsideEnvironmentsScopesAndUnknowns(t *testing.T) {
	e := newEnv(t)
	devOnly := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"}, "dev")
	cases := []struct {
		name   string
		req    *identityv1.AuthorizeRequest
		reason string
	}{
		{"other environment", &identityv1.AuthorizeRequest{PrincipalId: devOnly.Id, Action: "llm.complete", Resource: &identityv1.Resource{Environment: "staging"}}, "may not act in"},
		{"no environment for llm", &identityv1.AuthorizeRequest{PrincipalId: devOnly.Id, Action: "llm.complete"}, "environment is required"},
		{"unknown principal", &identityv1.AuthorizeRequest{PrincipalId: "svc_nobody", Action: "llm.complete", Resource: &identityv1.Resource{Environment: "dev"}}, "unknown principal"},
		{"scope excludes", &identityv1.AuthorizeRequest{PrincipalId: devOnly.Id, Action: "llm.complete", ApiKeyScopes: []string{"llm.embed"}, Resource: &identityv1.Resource{Environment: "dev"}}, "scopes"},
		{"role lacks admin action", &identityv1.AuthorizeRequest{PrincipalId: devOnly.Id, Action: "identity.apikey.create"}, "no role"},
	}
	for _, tc := range cases {
		d, err := e.svc.Authorize(e.ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if d.Allowed || !strings.Contains(strings.Join(d.Reasons, ";"), tc.reason) {
			t.Errorf("%s: decision = %v", tc.name, d)
		}
	}
}

func TestAuthorize_CustomRoleGrantsItsPermissions(t *testing.T) {
	e := newEnv(t)
	if _, err := e.svc.PutRole(e.ctx, root, &identityv1.Role{Name: "key-manager", Permissions: []string{"identity.apikey.*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PutRole(e.ctx, root, &identityv1.Role{Name: "admin", Permissions: []string{"*"}}); err == nil {
		t.Fatal("built-in role changed")
	}
	p := e.person("key-manager")
	if d := authorize(t, e.svc, e, p, "identity.apikey.rotate", nil, false); !d.Allowed {
		t.Fatalf("custom role: %v", d)
	}
	if d := authorize(t, e.svc, e, p, "identity.principal.create", nil, false); d.Allowed {
		t.Fatal("custom role grants too much")
	}
	roles, err := e.svc.ListRoles(e.ctx)
	if err != nil || roles[0].Name != "admin" || roles[len(roles)-1].Name != "key-manager" {
		t.Fatalf("roles = %v %v", roles, err)
	}
}

// approvedPolicy runs a policy change through the whole workflow to env.
func approvedPolicy(t *testing.T, e *env, env, doc string) *identityv1.Change {
	t.Helper()
	author := e.person("developer")
	approver := e.person("approver")
	c, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: author.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: env, Content: doc, Description: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: approver.Id, MFA: true}, c.Id, "ok"); err != nil {
		t.Fatal(err)
	}
	if env == "prod" {
		if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "staging"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.AttachEvidence(e.ctx, identity.Actor{PrincipalID: author.Id}, c.Id, &identityv1.Evidence{Kind: "staging_test_run", Reference: "run-1"}); err != nil {
			t.Fatal(err)
		}
	}
	c, err = e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const prodPolicy = `
defaults: {redaction_profile: strict, rate_limit_failure_mode: closed, strict_audit: true}
mfa: {roles: [admin]}
rules:
  - name: support-bot
    roles: [app]
    models: ["gpt-4o*"]
    prompts: [support-bot]
    limits: [{name: bot-rpm, kind: requests, dimensions: [api_key], limit: 60, period: 1m}]
`

func TestAuthorize_ResolvesPromotedPromptAndHonoursPromptRules(t *testing.T) {
	e := newEnv(t)
	approvedPolicy(t, e, "prod", prodPolicy)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	res := &identityv1.Resource{Model: "gpt-4o", Environment: "prod", PromptRef: "support-bot"}
	if d := authorize(t, e.svc, e, app, "llm.complete", res, false); d.Allowed || !strings.Contains(d.Reasons[0], "not promoted") {
		t.Fatalf("prompt not yet promoted: %v", d)
	}
	promotePrompt(t, e, "support-bot", "You are a helpful support agent.")
	d := authorize(t, e.svc, e, app, "llm.complete", res, false)
	if !d.Allowed || d.Obligations.SystemPrompt != "You are a helpful support agent." || d.Obligations.PromptVersion != "support-bot@1" {
		t.Fatalf("decision = %v", d)
	}
	if d.PolicyVersion != "1" || !d.Obligations.StrictAudit || d.Obligations.Limits[0].Name != "bot-rpm" {
		t.Fatalf("policy obligations = %v", d)
	}
	res.PromptRef = "support-bot@2"
	if d := authorize(t, e.svc, e, app, "llm.complete", res, false); d.Allowed {
		t.Fatal("unpromoted version allowed")
	}
	res.PromptRef = "hr-bot"
	if d := authorize(t, e.svc, e, app, "llm.complete", res, false); d.Allowed {
		t.Fatal("prompt the role may not invoke allowed")
	}
}

func TestAuthorize_PolicyMarksRolesThatNeedMFA(t *testing.T) {
	e := newEnv(t)
	approvedPolicy(t, e, "prod", prodPolicy)
	admin := e.person("admin")
	res := &identityv1.Resource{Environment: "prod", Target: "x"}
	d := authorize(t, e.svc, e, admin, "identity.apikey.create", res, false)
	if d.Allowed || !d.MfaRequired {
		t.Fatalf("admin without MFA in prod: %v", d)
	}
	if d := authorize(t, e.svc, e, admin, "identity.apikey.create", res, true); !d.Allowed {
		t.Fatalf("admin with MFA: %v", d)
	}
}

func TestAuthorize_CacheIsInvalidatedOnOtherReplicasWithinASecond(t *testing.T) {
	e := newEnv(t)
	other := e.replica()
	dev := e.person("developer")
	res := &identityv1.Resource{Model: "gpt-4o", Environment: "dev"}
	if d := authorize(t, other, e, dev, "llm.complete", res, false); !d.Allowed {
		t.Fatalf("before: %v", d)
	}
	// Cached now on the other replica; change the principal on this one.
	upd := &identityv1.Principal{Id: dev.Id, Roles: []string{"viewer"}}
	if _, err := e.svc.UpdatePrincipal(e.ctx, root, upd, []string{"roles"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		if d := authorize(t, other, e, dev, "llm.complete", res, false); !d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("other replica still allows a second after the role change")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPolicyVersions_EveryVersionStaysReadable(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		approvedPolicy(t, e, "dev", fmt.Sprintf("defaults: {redaction_profile: p%d}\nrules: [{name: all}]\n", i))
	}
	versions, err := e.svc.ListPolicyVersions(e.ctx, "dev", true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range versions {
		got = append(got, v.Version)
	}
	if strings.Join(got, ",") != "3,2,1,0" {
		t.Fatalf("versions = %v", got)
	}
	v2, err := e.svc.GetPolicy(e.ctx, "dev", "2")
	if err != nil || !strings.Contains(v2.Document, "p2") || v2.Approver == "" || v2.ChangeId == "" {
		t.Fatalf("v2 = %v %v", v2, err)
	}
	hist, err := e.store.History(e.ctx, "policy.dev.head")
	if err != nil || len(hist) != 3 {
		t.Fatalf("head history = %d %v", len(hist), err)
	}
	active, _ := e.svc.GetPolicy(e.ctx, "dev", "")
	if active.Version != "3" {
		t.Fatalf("active = %v", active.Version)
	}
}

func promotePrompt(t *testing.T, e *env, id, content string) *identityv1.Change {
	t.Helper()
	author := e.person("developer")
	approver := e.person("approver")
	c, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: author.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION, Target: id, Content: content})
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() (*identityv1.Change, error){
		func() (*identityv1.Change, error) {
			return e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "")
		},
		func() (*identityv1.Change, error) {
			return e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: author.Id}, c.Id, "staging")
		},
		func() (*identityv1.Change, error) {
			return e.svc.AttachEvidence(e.ctx, identity.Actor{PrincipalID: author.Id}, c.Id, &identityv1.Evidence{Kind: "eval_report", Reference: "r1"})
		},
		func() (*identityv1.Change, error) {
			return e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "prod")
		},
	}
	for _, step := range steps {
		if c, err = step(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestAuthorize_AdminActionWithoutEnvironmentIsDecidedUnderProdPolicy(t *testing.T) {
	e := newEnv(t)
	admin := e.person("admin")
	if d := authorize(t, e.svc, e, admin, "identity.principal.create", nil, false); !d.Allowed {
		t.Fatalf("before a prod policy: %v", d)
	}
	approvedPolicy(t, e, "prod", prodPolicy) // marks admins as needing MFA
	d := authorize(t, e.svc, e, admin, "identity.principal.create", nil, false)
	if d.Allowed || !d.MfaRequired || d.PolicyVersion != "1" {
		t.Fatalf("unscoped admin action without MFA: %v", d)
	}
}
