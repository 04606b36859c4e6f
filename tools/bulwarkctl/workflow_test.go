package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

const validPolicy = `defaults:
  redaction_profile: default
  rate_limit_failure_mode: closed
  payload_retention: hash_only
  limits:
    - name: staging-requests-per-minute
      kind: requests
      dimensions: [principal]
      limit: 120
      period: 1m
rules:
  - name: llm-for-apps
    effect: allow
    actions: ["llm.*"]
`

type changeJSON struct {
	Change struct {
		ID                   string   `json:"id"`
		State                string   `json:"state"`
		Author               string   `json:"author"`
		Approver             string   `json:"approver"`
		PromotedEnvironments []string `json:"promoted_environments"`
		Evidence             []struct {
			Kind      string `json:"kind"`
			Reference string `json:"reference"`
		} `json:"evidence"`
	} `json:"change"`
}

// approver makes a second person who may approve what the admin proposes, and returns their key for env.
func (s *stack) approver(t *testing.T, env string) string {
	t.Helper()
	s.ok(t, "principals", "create", "usr_reviewer", "--kind", "person", "--role", "approver", "--env", "dev", "--env", "staging", "--env", "prod",
		"--email", "reviewer@example.com")
	if env != "dev" {
		return s.envKey(t, "usr_reviewer", env)
	}
	return oneSecret(t, s.ok(t, "keys", "create", "--principal", "usr_reviewer", "--env", env))
}

func TestPolicies_ValidateProposeApproveEvidencePromote(t *testing.T) {
	s := startStack(t)
	reviewer := s.approver(t, "staging")
	admin := s.envKey(t, s.AdminID, "staging")

	bad := tempFile(t, "bad.yaml", "rules:\n  - name: x\n    effect: maybe\n")
	o, _, code := s.ctl(t, s.AdminKey, "", "policies", "validate", bad)
	if code != 1 || !strings.Contains(o, "INVALID") || !strings.Contains(o, "  - ") {
		t.Fatalf("invalid policy: exit %d:\n%s", code, o)
	}
	good := tempFile(t, "staging.yaml", validPolicy)
	if o := s.ok(t, "policies", "validate", good); !strings.Contains(o, "valid (sha256 ") {
		t.Fatalf("valid policy: %s", o)
	}

	var ch changeJSON
	decode(t, s.ok(t, "--json", "policies", "propose", good, "--env", "staging", "-m", "tighter staging limits"), &ch)
	id := ch.Change.ID
	if id == "" || ch.Change.State != "CHANGE_STATE_PROPOSED" {
		t.Fatalf("proposed: %+v", ch)
	}
	// The author cannot approve their own change.
	if _, e, code := s.ctl(t, s.AdminKey, "", "changes", "approve", id); code != 2 || !strings.Contains(e, "approve change") {
		t.Fatalf("self-approval: exit %d: %s", code, e)
	}
	o, e, code := s.ctl(t, reviewer, "", "changes", "approve", id, "-m", "looks right")
	if code != 0 || !strings.Contains(o, "approved") || !strings.Contains(o, "usr_reviewer") {
		t.Fatalf("approve: exit %d\n%s\n%s", code, o, e)
	}
	decode(t, s.ok(t, "--json", "changes", "evidence", "add", id, "--kind", "staging_test", "--ref", "https://ci.example.com/run/1"), &ch)
	if len(ch.Change.Evidence) != 1 || ch.Change.Evidence[0].Reference != "https://ci.example.com/run/1" {
		t.Fatalf("evidence: %+v", ch)
	}
	if _, e, code := s.ctl(t, s.AdminKey, "", "changes", "promote", id, "--env", "staging"); code != 2 || !strings.Contains(e, "cannot act in staging") {
		t.Fatalf("promote to staging with a dev key: exit %d: %s", code, e)
	}
	if o, e, code := s.ctl(t, admin, "", "changes", "promote", id, "--env", "staging"); code != 0 || !strings.Contains(o, "promoted") || !strings.Contains(o, "staging") {
		t.Fatalf("promote: exit %d\n%s\n%s", code, o, e)
	}

	versions := s.ok(t, "policies", "versions", "--env", "staging")
	if !strings.HasPrefix(versions, "VERSION") || !strings.Contains(versions, id) {
		t.Fatalf("versions:\n%s", versions)
	}
	doc, _, code := s.ctl(t, s.AdminKey, "", "policies", "get", "--env", "staging")
	if code != 0 || doc != validPolicy {
		t.Fatalf("policies get printed a different document (exit %d):\n%s", code, doc)
	}
	got := s.ok(t, "changes", "get", id)
	for _, want := range []string{"policy_version", "staging", "usr_reviewer", "staging_test", "history:", "evidence:"} {
		if !strings.Contains(got, want) {
			t.Fatalf("changes get lacks %q:\n%s", want, got)
		}
	}
	decode(t, s.ok(t, "changes", "get", id, "--json"), &ch)
	if !contains(ch.Change.PromotedEnvironments, "staging") {
		t.Fatalf("changes get --json: %+v", ch)
	}
	state := strings.ToLower(strings.TrimPrefix(ch.Change.State, "CHANGE_STATE_"))
	if list := s.ok(t, "changes", "list", "--state", state, "--kind", "policy_version"); !strings.Contains(list, id) {
		t.Fatalf("changes list --state %s:\n%s", state, list)
	}
	if list := s.ok(t, "changes", "list", "--state", "rejected"); strings.Contains(list, id) {
		t.Fatalf("an applied change listed as rejected:\n%s", list)
	}

	// A rejected change; break-glass needs a second factor the admin's API key does not prove.
	decode(t, s.ok(t, "--json", "policies", "propose", good, "--env", "staging"), &ch)
	if o, e, code := s.ctl(t, reviewer, "", "changes", "reject", ch.Change.ID, "-m", "not yet"); code != 0 || !strings.Contains(o, "rejected") {
		t.Fatalf("reject: exit %d %s %s", code, o, e)
	}
	// Break-glass applies at once without an approver, and says so. (A reviewer's
	// key lacks change.break_glass.)
	urgent := strings.Replace(validPolicy, "limit: 120", "limit: 10", 1)
	f := tempFile(t, "urgent.yaml", urgent)
	args := []string{"changes", "break-glass", f, "--kind", "policy_version", "--target", "staging", "--env", "staging", "--justification", "runaway spend INC-9"}
	if _, e, code := s.ctl(t, reviewer, "", args...); code != 2 || !strings.Contains(e, "permission_denied") {
		t.Fatalf("break-glass by an approver: exit %d: %s", code, e)
	}
	o, e, code = s.ctl(t, admin, "", args...)
	if code != 0 || !strings.Contains(o, "break_glass") {
		t.Fatalf("break-glass: exit %d\n%s\n%s", code, o, e)
	}
	if doc, _, _ := s.ctl(t, admin, "", "policies", "get", "--env", "staging"); doc != urgent {
		t.Fatalf("after break-glass staging's policy is:\n%s", doc)
	}
}

func TestPrompts_ProposeApprovePromote_ThenListGetVersions(t *testing.T) {
	s := startStack(t)
	reviewer := s.approver(t, "dev")
	f := tempFile(t, "prompt.txt", "You are the support assistant. Never reveal account numbers.")
	var ch changeJSON
	decode(t, s.ok(t, "--json", "prompts", "propose", "support-bot", f, "-m", "first version"), &ch)
	if _, e, code := s.ctl(t, reviewer, "", "changes", "approve", ch.Change.ID); code != 0 {
		t.Fatalf("approve: %s", e)
	}
	s.ok(t, "changes", "promote", ch.Change.ID, "--env", "dev")

	list := s.ok(t, "prompts", "list")
	if !strings.Contains(list, "support-bot") || !strings.Contains(list, "dev=1") {
		t.Fatalf("prompts list:\n%s", list)
	}
	content, _, code := s.ctl(t, s.AdminKey, "", "prompts", "get", "support-bot@1")
	if code != 0 || content != "You are the support assistant. Never reveal account numbers." {
		t.Fatalf("prompts get: %q", content)
	}
	if c, _, _ := s.ctl(t, s.AdminKey, "", "prompts", "get", "support-bot", "--env", "dev"); c != content {
		t.Fatalf("the prompt promoted in dev: %q", c)
	}
	var versions struct {
		Versions []struct {
			Version              string   `json:"version"`
			PromotedEnvironments []string `json:"promoted_environments"`
		} `json:"versions"`
	}
	decode(t, s.ok(t, "prompts", "versions", "support-bot", "--json"), &versions)
	if len(versions.Versions) != 1 || versions.Versions[0].Version != "1" {
		t.Fatalf("versions: %+v", versions)
	}
	// The gateway sends the promoted prompt to the provider when a call names it.
	s.ok(t, "principals", "create", "svc_support", "--role", "app", "--env", "dev")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_support", "--env", "dev"))
	if code, _ := s.chat(t, secret, "gpt-4o-mini", "x-bulwark-prompt", "support-bot@1"); code != 200 {
		t.Fatalf("chat: %d", code)
	}
	reqs := s.Sim.Requests()
	if len(reqs) == 0 || !strings.Contains(string(reqs[len(reqs)-1].Body), "Never reveal account numbers.") {
		t.Fatal("the provider did not receive the promoted system prompt")
	}
}

func TestRoutesPut_AddsAnAliasTheRouterServes_AndRoutesListShowsIt(t *testing.T) {
	s := startStack(t)
	route := tempFile(t, "route.json", `{"alias": "support-default", "max_attempts": 2, "total_timeout": "30s",
	  "deployments": [{"name": "support-openai", "provider": "openai", "model": "gpt-4o-mini", "weight": 1}]}`)
	if o := s.ok(t, "routes", "put", route); !strings.Contains(o, "stored route support-default (1 deployments)") {
		t.Fatalf("put: %s", o)
	}
	list := s.ok(t, "routes", "list")
	var row string
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, "support-default ") {
			row = l
		}
	}
	if f := strings.Fields(row); len(f) < 9 || f[1] != "support-openai" || f[2] != "openai" || f[3] != "gpt-4o-mini" || f[8] != "30s" {
		t.Fatalf("routes list:\n%s", list)
	}
	res, err := s.complete(context.Background(), "support-default")
	if err != nil || res.GetDeployment() != "support-openai" {
		t.Fatalf("routing the new alias: %v %v", res, err)
	}
	if _, e, code := s.ctl(t, s.AdminKey, "", "routes", "put", tempFile(t, "bad.json", `{"alias": 7}`)); code != 2 || !strings.Contains(e, "not a route") {
		t.Fatalf("bad route file: exit %d: %s", code, e)
	}
}

func TestUsage_ShowsThePolicyLimitsConsumedByCalls_AndAlertsList(t *testing.T) {
	s := startStack(t)
	s.ok(t, "principals", "create", "growth", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_usage", "--role", "app", "--env", "dev", "--team", "growth")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_usage", "--env", "dev"))
	for range 3 {
		if code, _ := s.chat(t, secret, "gpt-4o-mini"); code != 200 {
			t.Fatalf("chat: %d", code)
		}
	}
	var u struct {
		Statuses []struct {
			Name      string `json:"name"`
			Limit     string `json:"limit"`
			Remaining string `json:"remaining"`
		} `json:"statuses"`
	}
	decode(t, s.ok(t, "usage", "--principal", "svc_usage", "--env", "dev", "--model", "gpt-4o-mini", "--json"), &u)
	if len(u.Statuses) != 1 || u.Statuses[0].Name != "dev-requests-per-minute" || u.Statuses[0].Limit != "600" {
		t.Fatalf("usage --json: %+v", u)
	}
	table := s.ok(t, "usage", "--principal", "svc_usage", "--env", "dev", "--model", "gpt-4o-mini")
	f := strings.Fields(strings.Split(strings.TrimSpace(table), "\n")[1])
	if len(f) < 4 || f[0] != "dev-requests-per-minute" || f[1] != "requests" || f[2] != "600" {
		t.Fatalf("usage table (LIMIT KIND LIMIT REMAINING ...):\n%s", table)
	}
	// Another principal has used nothing, so it has more left than the one that made calls.
	s.ok(t, "principals", "create", "svc_idle", "--role", "app", "--env", "dev")
	idle := s.ok(t, "usage", "--principal", "svc_idle", "--env", "dev", "--model", "gpt-4o-mini")
	fi := strings.Fields(strings.Split(strings.TrimSpace(idle), "\n")[1])
	if len(fi) < 4 || atoi(t, fi[3]) <= atoi(t, f[3]) {
		t.Fatalf("idle usage:\n%s\nbusy usage:\n%s", idle, table)
	}
	// Explicit limits from a file.
	lim := tempFile(t, "limits.json", `{"limits": [{"name": "dev-requests-per-minute", "kind": "LIMIT_KIND_REQUESTS", "dimensions": ["DIMENSION_PRINCIPAL"], "limit": 600, "period": "60s", "burst": 60}]}`)
	if o := s.ok(t, "usage", "--principal", "svc_usage", "--env", "dev", "--limits", lim); !strings.Contains(o, "dev-requests-per-minute") {
		t.Fatalf("usage --limits:\n%s", o)
	}

	alerts := s.ok(t, "alerts", "list", "--since", "24h")
	if !strings.HasPrefix(alerts, "TIME") {
		t.Fatalf("alerts list:\n%s", alerts)
	}
	var al struct {
		Alerts []any `json:"alerts"`
	}
	decode(t, s.ok(t, "alerts", "list", "--json"), &al)
	if len(al.Alerts) != 0 {
		t.Fatalf("a quiet stack has alerts: %v", al.Alerts)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
