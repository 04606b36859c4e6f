package identity_test

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

const benchPolicy = `
defaults: {redaction_profile: standard, limits: [{name: team-rpm, kind: requests, dimensions: [team], limit: 1000, period: 1m}]}
providers:
  openai: {dpa: true}
  anthropic: {dpa: true, zero_retention: true}
data_classes:
  - {class: PII.FINANCIAL, when: "provider.dpa && provider.zero_retention"}
rules:
  - name: support-bot
    roles: [app]
    models: ["gpt-4o*", "claude-*"]
    prompts: [support-bot]
    when: '!("contractor" in resource.attributes)'
  - {name: no-cheap, effect: deny, providers: [cheapco]}
`

func benchSetup(b *testing.B) (*env, *identityv1.AuthorizeRequest) {
	e := newEnv(b)
	author := e.person("developer")
	approver := e.person("approver")
	for _, req := range []*identityv1.ProposeChangeRequest{
		{Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: "dev", Content: benchPolicy},
		{Kind: identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION, Target: "support-bot", Content: "You help customers."},
	} {
		c, err := e.svc.ProposeChange(e.ctx, identity.Actor{PrincipalID: author.Id}, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.svc.ApproveChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := e.svc.PromoteChange(e.ctx, identity.Actor{PrincipalID: approver.Id}, c.Id, "dev"); err != nil {
			b.Fatal(err)
		}
	}
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	req := &identityv1.AuthorizeRequest{PrincipalId: app.Id, Action: "llm.complete", Resource: &identityv1.Resource{
		Model: "gpt-4o", Environment: "dev", PromptRef: "support-bot", DataClasses: []string{"PII.FINANCIAL"},
		Attributes: map[string]string{"team": "support"}}}
	d, err := e.svc.Authorize(e.ctx, req)
	if err != nil || !d.Allowed {
		b.Fatalf("setup decision = %v %v", d, err)
	}
	return e, req
}

// BenchmarkAuthorize_Cached is a repeated decision: the cache answers.
func BenchmarkAuthorize_Cached(b *testing.B) {
	e, req := benchSetup(b)
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		if _, err := e.svc.Authorize(e.ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthorize_Uncached makes every request distinct (a new attribute value),
// so each one is decided afresh: principal, roles, policy and prompt come from the
// in-process caches, the CEL conditions and the data-class rules run.
func BenchmarkAuthorize_Uncached(b *testing.B) {
	e, base := benchSetup(b)
	reqs := make([]*identityv1.AuthorizeRequest, 4096)
	for i := range reqs {
		reqs[i] = &identityv1.AuthorizeRequest{PrincipalId: base.PrincipalId, Action: base.Action, Resource: &identityv1.Resource{
			Model: "gpt-4o", Environment: "dev", PromptRef: "support-bot", DataClasses: []string{"PII.FINANCIAL"},
			Attributes: map[string]string{"team": "support", "request": strconv.Itoa(i)}}}
	}
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	i := 0
	for b.Loop() {
		if i%len(reqs) == 0 {
			b.StopTimer()
			e.svc.ResetDecisionCache()
			b.StartTimer()
		}
		d, err := e.svc.Authorize(e.ctx, reqs[i%len(reqs)])
		if err != nil || !d.Allowed {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAuthenticate_ApiKey is a cached key check: HMAC, constant-time compare, owner lookup.
func BenchmarkAuthenticate_ApiKey(b *testing.B) {
	e, req := benchSetup(b)
	p, _ := e.svc.GetPrincipal(e.ctx, req.PrincipalId)
	_, secret := e.key(p, "dev", 0)
	if _, err := e.svc.Authenticate(e.ctx, secret, "dev"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		if _, err := e.svc.Authenticate(e.ctx, secret, "dev"); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the CPU time this process has used. Benchmarks report it per op
// ("cpu-ns/op") besides wall time, because the shared 2-core machine they run on
// is often loaded by other builds, which stretches wall time but not CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
