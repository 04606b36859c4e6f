package policy

import (
	"slices"
	"strings"
	"testing"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

const prodDoc = `
defaults:
  redaction_profile: standard
  rate_limit_failure_mode: closed
  payload_retention: hash_only
  limits:
    - {name: team-daily-spend, kind: spend, dimensions: [team], limit: 50000000, calendar_period: day}
mfa:
  roles: [admin]
  actions: ["change.*"]
providers:
  openai: {dpa: true, zero_retention: false}
  anthropic: {dpa: true, zero_retention: true}
  cheapco: {dpa: false, zero_retention: false}
data_classes:
  - class: PII.FINANCIAL
    when: provider.dpa && provider.zero_retention
  - class: "PII.HEALTH"
    providers: [anthropic]
  - class: "SECRET*"
    deny: true
rules:
  - name: developers-small-models
    roles: [developer]
    models: ["gpt-4o-mini", "claude-3-5-haiku*"]
    limits:
      - {name: dev-tokens, kind: tokens, dimensions: [principal], limit: 100000, period: 1m}
  - name: support-bot-only-its-prompt
    roles: [app]
    prompts: [support-bot]
    providers: [openai, anthropic]
    redaction_profile: strict
    payload_retention: redacted
  - name: no-cheapco
    effect: deny
    providers: [cheapco]
  - name: contractors-never-in-prod
    effect: deny
    actions: ["*"]
    when: '"contractor" in resource.attributes && resource.attributes["contractor"] == "true"'
`

func mustCompile(t *testing.T, doc string) *Compiled {
	t.Helper()
	c, problems, err := Compile(doc)
	if err != nil {
		t.Fatalf("Compile: %v %v", err, problems)
	}
	return c
}

func TestEvaluate_AllowsRoleOnListedModelWithObligations(t *testing.T) {
	c := mustCompile(t, prodDoc)
	d := c.Evaluate(Input{PrincipalID: "u1", Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o-mini", Environment: "prod"})
	if !d.Allowed {
		t.Fatalf("denied: %v", d.Reasons)
	}
	ob := d.Obligations
	if ob.RedactionProfile != "standard" || ob.RateLimitFailureMode != identityv1.FailureMode_FAILURE_MODE_CLOSED {
		t.Fatalf("obligations = %v", ob)
	}
	var names []string
	for _, l := range ob.Limits {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{"team-daily-spend", "dev-tokens"}) {
		t.Fatalf("limits = %v", names)
	}
	if ob.Limits[0].Kind != ratelimitv1.LimitKind_LIMIT_KIND_SPEND || ob.Limits[0].CalendarPeriod != "day" {
		t.Fatalf("spend limit = %v", ob.Limits[0])
	}
	if ob.Limits[1].Period.AsDuration().Seconds() != 60 {
		t.Fatalf("token limit period = %v", ob.Limits[1].Period)
	}
}

func TestEvaluate_DeniesModelNotListedForRole(t *testing.T) {
	c := mustCompile(t, prodDoc)
	d := c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o"})
	if d.Allowed || !strings.Contains(d.Reasons[0], "no rule allows") {
		t.Fatalf("decision = %+v", d)
	}
}

func TestEvaluate_PromptRestrictedRoleNeedsItsPrompt(t *testing.T) {
	c := mustCompile(t, prodDoc)
	if d := c.Evaluate(Input{Roles: []string{"app"}, Action: "llm.complete", Model: "gpt-4o", Prompt: "hr-bot"}); d.Allowed {
		t.Fatal("app invoked a prompt it is not allowed")
	}
	if d := c.Evaluate(Input{Roles: []string{"app"}, Action: "llm.complete", Model: "gpt-4o"}); d.Allowed {
		t.Fatal("app called without its prompt")
	}
	d := c.Evaluate(Input{Roles: []string{"app"}, Action: "llm.complete", Model: "gpt-4o", Prompt: "support-bot"})
	if !d.Allowed {
		t.Fatalf("denied: %v", d.Reasons)
	}
	if d.Obligations.RedactionProfile != "strict" || d.Obligations.PayloadRetention != identityv1.PayloadRetention_PAYLOAD_RETENTION_REDACTED {
		t.Fatalf("rule obligations not applied: %v", d.Obligations)
	}
	if !slices.Equal(d.Obligations.AllowedProviders, []string{"anthropic", "openai"}) {
		t.Fatalf("allowed providers = %v", d.Obligations.AllowedProviders)
	}
}

func TestEvaluate_FinancialPIIOnlyToZeroRetentionProvidersWithDPA(t *testing.T) {
	c := mustCompile(t, prodDoc)
	in := Input{Roles: []string{"app"}, Action: "llm.complete", Model: "gpt-4o", Prompt: "support-bot", DataClasses: []string{"PII.FINANCIAL"}}
	d := c.Evaluate(in)
	if !d.Allowed || !slices.Equal(d.Obligations.AllowedProviders, []string{"anthropic"}) {
		t.Fatalf("decision = %+v", d)
	}
	in.Provider = "openai"
	if d := c.Evaluate(in); d.Allowed || !strings.Contains(d.Reasons[0], `"PII.FINANCIAL" may not be sent to provider "openai"`) {
		t.Fatalf("decision = %+v", d)
	}
	in.Provider = "anthropic"
	if d := c.Evaluate(in); !d.Allowed {
		t.Fatalf("denied: %v", d.Reasons)
	}
}

func TestEvaluate_SecretsGoNowhere(t *testing.T) {
	c := mustCompile(t, prodDoc)
	d := c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o-mini", DataClasses: []string{"SECRET.AWS"}})
	if d.Allowed {
		t.Fatal("secret allowed")
	}
}

func TestEvaluate_DenyRuleWinsAndCELConditionsSeeAttributes(t *testing.T) {
	c := mustCompile(t, prodDoc)
	if d := c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o-mini", Provider: "cheapco"}); d.Allowed {
		t.Fatal("deny rule on provider ignored")
	}
	// With the provider not yet chosen, the denied provider is left out of the allowed ones.
	d0 := c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o-mini"})
	if !d0.Allowed || !slices.Equal(d0.Obligations.AllowedProviders, []string{"anthropic", "openai"}) {
		t.Fatalf("decision = %+v", d0)
	}
	d := c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "gpt-4o-mini", Attributes: map[string]string{"contractor": "true"}})
	if d.Allowed || !strings.Contains(d.Reasons[0], "contractors-never-in-prod") {
		t.Fatalf("decision = %+v", d)
	}
	// The same deny rule also narrows admin actions.
	if d := c.Evaluate(Input{Roles: []string{"admin"}, MFA: true, Action: "identity.apikey.create", Attributes: map[string]string{"contractor": "true"}}); d.Allowed {
		t.Fatal("admin action by contractor allowed")
	}
}

func TestEvaluate_MFARequiredForMarkedRolesAndActions(t *testing.T) {
	c := mustCompile(t, prodDoc)
	d := c.Evaluate(Input{Roles: []string{"admin"}, Action: "identity.apikey.create"})
	if d.Allowed || !d.MFARequired {
		t.Fatalf("admin without MFA: %+v", d)
	}
	d = c.Evaluate(Input{Roles: []string{"approver"}, Action: "change.approve"})
	if d.Allowed || !d.MFARequired {
		t.Fatalf("change action without MFA: %+v", d)
	}
	if d := c.Evaluate(Input{Roles: []string{"approver"}, Action: "change.approve", MFA: true}); !d.Allowed {
		t.Fatalf("with MFA: %+v", d)
	}
	// A request that a second factor would not save is not reported as needing one.
	d = c.Evaluate(Input{Roles: []string{"admin"}, Action: "llm.complete", Model: "gpt-4o"})
	if d.Allowed || d.MFARequired {
		t.Fatalf("denied anyway, yet mfa_required: %+v", d)
	}
}

func TestCompile_ReportsEveryProblem(t *testing.T) {
	_, problems, err := Compile(`
defaults: {rate_limit_failure_mode: sometimes}
data_classes:
  - class: PII.X
rules:
  - name: bad
    effect: maybe
    when: 'resource.model + 1'
    limits: [{name: x, kind: bananas, limit: 0, period: forever}]
`)
	if err == nil {
		t.Fatal("invalid document compiled")
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"rate_limit_failure_mode", "give providers", "effect must be", "when:", "kind must be", "limit must be positive", "period must be"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
}

func TestCompile_RejectsUnknownFieldsAndNonBooleanConditions(t *testing.T) {
	if _, _, err := Compile("rules: [{name: x, modles: [a]}]"); err == nil {
		t.Fatal("unknown field accepted")
	}
	if _, _, err := Compile(`rules: [{name: x, when: '"a"'}]`); err == nil {
		t.Fatal("string condition accepted")
	}
}

func TestCompile_JSONAndYAMLGiveTheSameDecision(t *testing.T) {
	j := mustCompile(t, `{"rules":[{"name":"a","roles":["developer"],"models":["m*"]}]}`)
	y := mustCompile(t, "rules:\n  - name: a\n    roles: [developer]\n    models: [\"m*\"]\n")
	in := Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "m1"}
	if j.Evaluate(in).Allowed != y.Evaluate(in).Allowed || !j.Evaluate(in).Allowed {
		t.Fatal("JSON and YAML differ")
	}
}

func TestDefaults_DevAllowsClosedRefuses(t *testing.T) {
	dev := mustCompile(t, DevDefault)
	if d := dev.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "anything"}); !d.Allowed {
		t.Fatalf("dev default denied: %v", d.Reasons)
	}
	closed := mustCompile(t, ClosedDefault)
	if d := closed.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "anything"}); d.Allowed {
		t.Fatal("closed default allowed")
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true}, {"gpt-*", "gpt-4o", true}, {"gpt-*", "claude", false},
		{"*-mini", "gpt-4o-mini", true}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxc", false},
		{"PII.*", "PII.FINANCIAL", true}, {"openai/*", "openai/gpt-4o", true}, {"x", "x", true}, {"x", "y", false},
		{"ab*ba", "aba", false},
	}
	for _, tc := range cases {
		if got := Match(tc.pattern, tc.value); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.value, got)
		}
	}
}

func FuzzCompile_NeverPanics(f *testing.F) {
	f.Add(prodDoc)
	f.Add(DevDefault)
	f.Add(`rules: [{when: 'principal.roles.exists(r, r == "x")'}]`)
	f.Fuzz(func(t *testing.T, doc string) {
		c, _, err := Compile(doc)
		if err != nil {
			return
		}
		_ = c.Evaluate(Input{Roles: []string{"developer"}, Action: "llm.complete", Model: "m", DataClasses: []string{"PII.FINANCIAL"}})
	})
}

func FuzzMatch_AgreesWithLiteralWhenNoStar(f *testing.F) {
	f.Add("abc", "abc")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		if strings.Contains(pattern, "*") {
			_ = Match(pattern, value)
			return
		}
		if Match(pattern, value) != (pattern == value) {
			t.Fatalf("Match(%q, %q) wrong", pattern, value)
		}
	})
}

func BenchmarkEvaluate_ProdDocument(b *testing.B) {
	c, _, err := Compile(prodDoc)
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Roles: []string{"app"}, Action: "llm.complete", Model: "gpt-4o", Prompt: "support-bot", DataClasses: []string{"PII.FINANCIAL"}, Attributes: map[string]string{"contractor": "false"}}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Evaluate(in).Allowed {
			b.Fatal("denied")
		}
	}
}
