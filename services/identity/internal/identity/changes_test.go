package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func proposePrompt(t *testing.T, e *env, author *identityv1.Principal, content string) *identityv1.Change {
	t.Helper()
	c, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: author.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION, Target: "support-bot", Content: content, Description: "tone"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestChange_TwoPersonRule(t *testing.T) {
	e := newEnv(t)
	author := e.person("developer", "approver")
	c := proposePrompt(t, e, author, "v1")
	if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: author.Id}, c.Id, ""); !errors.Is(err, identity.ErrFailedPrecondition) {
		t.Fatalf("self-approval: %v", err)
	}
	dev := e.person("developer")
	if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: dev.Id}, c.Id, ""); !errors.Is(err, identity.ErrPermissionDenied) {
		t.Fatalf("approval without the approver role: %v", err)
	}
	bot := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"approver"})
	if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: bot.Id}, c.Id, ""); !errors.Is(err, identity.ErrPermissionDenied) {
		t.Fatalf("approval by a service: %v", err)
	}
	approver := e.person("approver")
	got, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "lgtm")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != identityv1.ChangeState_CHANGE_STATE_APPROVED || got.Approver != approver.Id || len(got.History) != 2 {
		t.Fatalf("change = %v", got)
	}
}

func TestChange_ProdOnlyAfterStagingAndEvidence(t *testing.T) {
	e := newEnv(t)
	author := e.person("developer")
	approver := e.person("approver")
	c := proposePrompt(t, e, author, "v1")
	if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "staging"); !errors.Is(err, identity.ErrFailedPrecondition) {
		t.Fatalf("promoting unapproved: %v", err)
	}
	if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "prod"); !errors.Is(err, identity.ErrFailedPrecondition) {
		t.Fatalf("prod before staging: %v", err)
	}
	if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "staging"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "prod"); !errors.Is(err, identity.ErrFailedPrecondition) || !strings.Contains(err.Error(), "evidence") {
		t.Fatalf("prod without evidence: %v", err)
	}
	if _, err := e.svc.AttachEvidence(e.ctx, identity.Actor{PrincipalID: author.Id}, c.Id, &identityv1.Evidence{Kind: "staging_test_run", Reference: "run-42"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != identityv1.ChangeState_CHANGE_STATE_PROMOTED || strings.Join(got.PromotedEnvironments, ",") != "staging,prod" || got.ResultVersion != "support-bot@1" {
		t.Fatalf("change = %v", got)
	}
	pv, err := e.svc.GetPrompt(e.ctx, "support-bot", "prod")
	if err != nil || pv.Content != "v1" || pv.Author != author.Id || pv.ContentHash != got.AfterHash || strings.Join(pv.PromotedEnvironments, ",") != "prod,staging" {
		t.Fatalf("prompt = %v %v", pv, err)
	}
}

func TestChange_EveryStepIsAnAdminActionWithHashes(t *testing.T) {
	e := newEnv(t)
	first := promotePrompt(t, e, "support-bot", "v1")
	second := promotePrompt(t, e, "support-bot", "v2")
	if second.BeforeHash != first.AfterHash || second.AfterHash == first.AfterHash {
		t.Fatalf("hashes: first after %s, second before %s", first.AfterHash, second.BeforeHash)
	}
	byEvent := map[string]recorded{}
	for _, r := range e.adminActions() {
		if r.msgID != r.ev.EventId {
			t.Fatalf("Nats-Msg-Id %q != event id %q", r.msgID, r.ev.EventId)
		}
		byEvent[r.ev.EventId] = r
	}
	for _, step := range second.History {
		r, ok := byEvent[step.AuditEventId]
		if !ok {
			t.Fatalf("step %s has no admin_action", step.Action)
		}
		a := r.ev.GetAdminAction()
		if a.ChangeId != second.Id || a.Actor != step.Actor || a.AfterHash != second.AfterHash || r.ev.SourceService != "identity" {
			t.Fatalf("step %s recorded as %v", step.Action, a)
		}
	}
	// The prod promotion of v2 replaced v1 there.
	last := byEvent[second.History[len(second.History)-1].AuditEventId].ev.GetAdminAction()
	if last.Action != "change.promote" || last.BeforeHash != first.AfterHash || last.Details["environment"] != "prod" {
		t.Fatalf("prod promotion = %v", last)
	}
	versions, _ := e.svc.ListPromptVersions(e.ctx, "support-bot")
	if len(versions) != 2 || versions[0].Version != 2 {
		t.Fatalf("versions = %v", versions)
	}
}

func TestChange_BreakGlassIsAppliedAndLoud(t *testing.T) {
	e := newEnv(t)
	admin := e.person("admin")
	dev := e.person("developer")
	req := &identityv1.ProposeChangeRequest{Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: "prod", Content: "rules: [{name: everyone}]\n"}
	if _, err := e.svc.BreakGlass(e.ctx, identity.Actor{PrincipalID: dev.Id}, req, "prod", "outage"); !errors.Is(err, identity.ErrPermissionDenied) {
		t.Fatalf("developer broke glass: %v", err)
	}
	if _, err := e.svc.BreakGlass(e.ctx, identity.Actor{PrincipalID: admin.Id}, req, "prod", " "); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("no justification: %v", err)
	}
	c, err := e.svc.BreakGlass(e.ctx, identity.Actor{PrincipalID: admin.Id, MFA: true}, req, "prod", "INC-7 outage")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != identityv1.ChangeState_CHANGE_STATE_BREAK_GLASS || c.Approver != "" {
		t.Fatalf("change = %v", c)
	}
	pv, _ := e.svc.GetPolicy(e.ctx, "prod", "")
	if pv.Version != "1" || pv.ChangeId != c.Id {
		t.Fatalf("policy = %v", pv)
	}
	got := e.actionsNamed("change.break_glass")
	if len(got) != 1 || !got[0].BreakGlass || got[0].Reason != "INC-7 outage" || !got[0].Mfa || got[0].AfterHash != c.AfterHash {
		t.Fatalf("audit = %v", got)
	}
}

func TestChange_ModelRouteIsStoredAndAnnounced(t *testing.T) {
	e := newEnv(t)
	sub, err := e.nc.SubscribeSync("bulwark.identity.v1.policy_changed")
	if err != nil {
		t.Fatal(err)
	}
	admin := e.person("admin")
	route := `{"alias":"gpt-4o","deployments":[{"provider":"openai","model":"gpt-4o-2024-08-06"}]}`
	c, err := e.svc.BreakGlass(e.ctx, identity.Actor{PrincipalID: admin.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_MODEL_ROUTE, Target: "gpt-4o", Content: route}, "staging", "provider outage")
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := sub.NextMsg(2e9)
		if err != nil {
			t.Fatalf("no policy_changed for the route: %v", err)
		}
		if strings.Contains(string(msg.Data), "model_route") {
			if msg.Header.Get("Nats-Msg-Id") == "" || !strings.Contains(string(msg.Data), c.Id) {
				t.Fatalf("event = %q", msg.Data)
			}
			break
		}
	}
	if _, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: admin.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_MODEL_ROUTE, Target: "other", Content: route}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("alias mismatch: %v", err)
	}
}

func TestChange_InvalidPolicyIsRefusedAtProposal(t *testing.T) {
	e := newEnv(t)
	dev := e.person("developer")
	_, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: dev.Id}, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: "prod", Content: "rules: [{effect: perhaps}]"})
	if !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

func TestChange_ListNewestFirstWithPaging(t *testing.T) {
	e := newEnv(t)
	dev := e.person("developer")
	var ids []string
	for range 3 {
		ids = append(ids, proposePrompt(t, e, dev, "x").Id)
	}
	page, next, err := e.svc.ListChanges(e.ctx, 0, 0, 2, "")
	if err != nil || len(page) != 2 || page[0].Id != ids[2] || next == "" {
		t.Fatalf("page 1 = %d %q %v", len(page), next, err)
	}
	page, next, _ = e.svc.ListChanges(e.ctx, 0, 0, 2, next)
	if len(page) != 1 || page[0].Id != ids[0] || next != "" {
		t.Fatalf("page 2 = %v %q", page, next)
	}
}

func TestOutbox_AdminActionPublishedLaterWhenAuditStreamWasMissing(t *testing.T) {
	e := newEnv(t)
	if err := e.js.DeleteStream(e.ctx, "BULWARK_AUDIT"); err != nil {
		t.Fatal(err)
	}
	p := e.person("viewer")
	if p.Id == "" {
		t.Fatal("principal not created while the audit stream was missing")
	}
	keys, _ := e.store.Keys(e.ctx, "outbox")
	if len(keys) == 0 {
		t.Fatal("undelivered admin action not kept in the outbox")
	}
	if _, err := e.js.CreateStream(e.ctx, jsStream()); err != nil {
		t.Fatal(err)
	}
	platformtest.Until(t, 10*time.Second, "the principal_create admin action", func() bool { return len(e.actionsNamed("identity.principal.create")) == 1 })
	platformtest.Until(t, 10*time.Second, "an empty outbox", func() bool { keys, _ := e.store.Keys(e.ctx, "outbox"); return len(keys) == 0 })
}
