package main

// The incident runbooks' commands (docs: provider breach, key exposure):
// provider disable/enable, keys rotate --provider, audit query for the blast radius.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

type providerJSON struct {
	Name                  string `json:"name"`
	Enabled               bool   `json:"enabled"`
	Routable              bool   `json:"routable"`
	KeyAvailable          bool   `json:"key_available"`
	DaysUntilReportExpiry int    `json:"days_until_report_expiry"`
	UnroutableReason      string `json:"unroutable_reason"`
}

func (s *stack) providers(t *testing.T) map[string]providerJSON {
	t.Helper()
	var res struct {
		Providers []providerJSON `json:"providers"`
	}
	decode(t, s.ok(t, "providers", "list", "--env", "dev", "--json"), &res)
	out := map[string]providerJSON{}
	for _, p := range res.Providers {
		out[p.Name] = p
	}
	return out
}

func TestProviderDisable_TakesItOutOfRoutingAtOnce_EnableBringsItBack(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()

	table := s.ok(t, "providers", "list", "--env", "dev")
	var openaiRow string
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "openai ") {
			openaiRow = l
		}
	}
	// The development catalog's reports expire a year from now: 364 or 365 days.
	if f := strings.Fields(openaiRow); len(f) < 6 || f[2] != "yes" || f[3] != "yes" || f[4] != "yes" || (f[5] != "365" && f[5] != "364") {
		t.Fatalf("providers list row for openai (enabled, routable, key, days):\n%s", table)
	}
	if p := s.providers(t)["openai"]; !p.Routable || p.DaysUntilReportExpiry < 364 {
		t.Fatalf("providers list --json: %+v", p)
	}
	if _, err := s.complete(ctx, "gpt-4o-mini"); err != nil {
		t.Fatalf("gpt-4o-mini before the incident: %v", err)
	}

	_, e, code := s.ctl(t, s.AdminKey, "", "provider", "disable", "openai")
	if code != 2 || !strings.Contains(e, "--reason") {
		t.Fatalf("disable without a reason: exit %d: %s", code, e)
	}
	out := s.ok(t, "provider", "disable", "openai", "--reason", "vendor breach INC-42")
	if !strings.Contains(out, "provider openai: enabled=no routable=no") {
		t.Fatalf("disable output: %s", out)
	}
	if p := s.providers(t)["openai"]; p.Enabled || p.Routable || p.UnroutableReason == "" {
		t.Fatalf("after disable: %+v", p)
	}
	if _, err := s.complete(ctx, "gpt-4o-mini"); err == nil {
		t.Fatal("gpt-4o-mini (openai only) was routed to a disabled provider")
	}
	before := len(s.Sim.Requests())
	res, err := s.complete(ctx, "gpt-4o")
	if err != nil {
		t.Fatalf("gpt-4o has other deployments and should fail over: %v", err)
	}
	if res.GetProvider() == "openai" {
		t.Fatalf("gpt-4o was served by the disabled provider: %v", res)
	}
	for _, r := range s.Sim.Requests()[before:] {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sim-dev-openai") {
			t.Fatalf("a request reached openai after it was disabled: %s", r.Path)
		}
	}

	s.ok(t, "provider", "enable", "openai", "--reason", "vendor cleared")
	if p := s.providers(t)["openai"]; !p.Enabled || !p.Routable {
		t.Fatalf("after enable: %+v", p)
	}
	if res, err := s.complete(ctx, "gpt-4o-mini"); err != nil || res.GetProvider() != "openai" {
		t.Fatalf("gpt-4o-mini after enable: %v %v", res, err)
	}
}

func TestKeysRotateProvider_WritesANewVaultVersionThatTheNextRoutedRequestUses(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	t.Setenv("VAULT_ADDR", s.Vault.Addr)
	t.Setenv("VAULT_TOKEN", s.Vault.Token)

	if _, err := s.complete(ctx, "gpt-4o-mini"); err != nil {
		t.Fatal(err)
	}
	if h := lastAuth(s); h != "Bearer sim-dev-openai-initial" {
		t.Fatalf("before rotation the provider got %q", h)
	}
	const newKey = "sk-rotated-after-exposure-0001"
	o, e, code := s.ctl(t, s.AdminKey, newKey+"\n", "keys", "rotate", "--provider", "openai", "--env", "dev")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if strings.Contains(o+e, newKey) {
		t.Fatalf("the provider key was echoed:\n%s\n%s", o, e)
	}
	if !strings.Contains(o, "wrote version 2 of secret/bulwark/dev/providers/openai") {
		t.Fatalf("output: %s", o)
	}
	sec, err := s.Vault.Client.KVv2("secret").Get(ctx, "bulwark/dev/providers/openai")
	if err != nil || sec.Data["api_key"] != newKey || sec.VersionMetadata.Version != 2 {
		t.Fatalf("vault after rotation: %v (err %v)", sec, err)
	}
	// The router re-checks the version after its key TTL (50 ms here) without a restart.
	platformtest.Until(t, 20*time.Second, "the router to use the rotated key", func() bool {
		if _, err := s.complete(ctx, "gpt-4o-mini"); err != nil {
			t.Fatal(err)
		}
		return lastAuth(s) == "Bearer "+newKey
	})

	// --from-file, --json, and other fields of the secret are kept.
	if _, err := s.Vault.Client.KVv2("secret").Patch(ctx, "bulwark/dev/providers/anthropic", map[string]any{"org": "org-123"}); err != nil {
		t.Fatal(err)
	}
	f := tempFile(t, "key", "sk-ant-from-file\n")
	var res struct {
		Provider string `json:"provider"`
		Version  int    `json:"version"`
		Path     string `json:"path"`
	}
	js := s.ok(t, "--json", "keys", "rotate", "--provider", "anthropic", "--env", "dev", "--from-file", f)
	decode(t, js, &res)
	if res.Provider != "anthropic" || res.Version != 3 || res.Path != "secret/bulwark/dev/providers/anthropic" || strings.Contains(js, "sk-ant") {
		t.Fatalf("--json: %s", js)
	}
	sec, err = s.Vault.Client.KVv2("secret").Get(ctx, "bulwark/dev/providers/anthropic")
	if err != nil || sec.Data["api_key"] != "sk-ant-from-file" || sec.Data["org"] != "org-123" {
		t.Fatalf("anthropic secret after rotation keeps org and has the new key: err %v", err)
	}

	// Refusals: the same key again, an empty stdin, no Vault.
	if _, e, code := s.ctl(t, s.AdminKey, newKey, "keys", "rotate", "--provider", "openai", "--env", "dev"); code != 2 || !strings.Contains(e, "same as the current") || strings.Contains(e, newKey) {
		t.Fatalf("same key: exit %d: %s", code, e)
	}
	if _, e, code := s.ctl(t, s.AdminKey, "\n", "keys", "rotate", "--provider", "openai", "--env", "dev"); code != 2 || !strings.Contains(e, "no provider key read") {
		t.Fatalf("empty stdin: exit %d: %s", code, e)
	}
	t.Setenv("VAULT_ADDR", "")
	if _, e, code := s.ctl(t, s.AdminKey, "sk-x\n", "keys", "rotate", "--provider", "openai", "--env", "dev"); code != 2 || !strings.Contains(e, "VAULT_ADDR") {
		t.Fatalf("no vault: exit %d: %s", code, e)
	}
}

// lastAuth is the Authorization header of the simulator's latest request.
func lastAuth(s *stack) string {
	reqs := s.Sim.Requests()
	if len(reqs) == 0 {
		return ""
	}
	return reqs[len(reqs)-1].Header.Get("Authorization")
}

type recordJSON struct {
	Index   string `json:"index"`
	Subject string `json:"subject"`
	Data    string `json:"data"`
	Event   struct {
		LlmCall *struct {
			RequestID   string `json:"request_id"`
			PrincipalID string `json:"principal_id"`
			APIKeyID    string `json:"api_key_id"`
			Provider    string `json:"provider"`
			Decision    string `json:"decision"`
		} `json:"llm_call"`
		AdminAction *struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
			Target string `json:"target"`
		} `json:"admin_action"`
	} `json:"event"`
}

func (s *stack) query(t *testing.T, args ...string) []recordJSON {
	t.Helper()
	var res struct {
		Records []recordJSON `json:"records"`
	}
	decode(t, s.ok(t, append([]string{"audit", "query", "--json"}, args...)...), &res)
	return res.Records
}

func TestAuditQuery_FindsTheBlastRadiusByProviderKeyDecisionAndRequest(t *testing.T) {
	s := startStack(t)
	s.ok(t, "principals", "create", "claims", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_claims", "--role", "app", "--env", "dev", "--team", "claims")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_claims", "--env", "dev"))
	var keys struct {
		APIKeys []struct{ ID string } `json:"api_keys"`
	}
	decode(t, s.ok(t, "keys", "list", "--principal", "svc_claims", "--json"), &keys)
	keyID := keys.APIKeys[0].ID

	var reqIDs []string
	for range 3 {
		code, id := s.chat(t, secret, "gpt-4o-mini")
		if code != 200 || id == "" {
			t.Fatalf("chat: %d %q", code, id)
		}
		reqIDs = append(reqIDs, id)
	}
	s.ok(t, "provider", "disable", "openai", "--reason", "INC-7")
	if code, _ := s.chat(t, secret, "gpt-4o-mini"); code < 500 {
		t.Fatalf("a call to a model whose only provider is disabled answered %d", code)
	}

	var recs []recordJSON
	platformtest.Until(t, 20*time.Second, "four llm_call records of the key", func() bool {
		recs = s.query(t, "--key-id", keyID)
		return len(recs) == 4
	})
	for _, r := range recs {
		if r.Event.LlmCall == nil || r.Event.LlmCall.APIKeyID != keyID || r.Event.LlmCall.PrincipalID != "svc_claims" || r.Data != "" {
			t.Fatalf("record: %+v", r)
		}
	}
	viaOpenAI := s.query(t, "--provider", "openai", "--decision", "allowed", "--from", "1h")
	if len(viaOpenAI) != 3 {
		t.Fatalf("allowed calls via openai: %d, want 3", len(viaOpenAI))
	}
	if one := s.query(t, "--request-id", reqIDs[1]); len(one) != 1 || one[0].Event.LlmCall.RequestID != reqIDs[1] {
		t.Fatalf("by request id: %+v", one)
	}
	if none := s.query(t, "--key-id", keyID, "--to", "2000-01-01T00:00:00Z"); len(none) != 0 {
		t.Fatalf("records before 2000: %d", len(none))
	}
	var disabled []recordJSON
	platformtest.Until(t, 20*time.Second, "the provider disable admin action", func() bool {
		disabled = nil
		for _, r := range s.query(t, "--kind", "admin_action") {
			if a := r.Event.AdminAction; a != nil && strings.Contains(a.Action, "provider") && strings.Contains(a.Target, "openai") {
				disabled = append(disabled, r)
			}
		}
		return len(disabled) == 1
	})

	table := s.ok(t, "audit", "query", "--key-id", keyID, "--limit", "2")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "INDEX") || !strings.Contains(lines[1], "svc_claims") || !strings.Contains(lines[1], "openai") ||
		!strings.Contains(lines[1], "allowed") || !strings.Contains(table, reqIDs[0]) && !strings.Contains(table, reqIDs[1]) && !strings.Contains(table, reqIDs[2]) {
		t.Fatalf("table (limit 2):\n%s", table)
	}
	_, e, _ := s.ctl(t, s.AdminKey, "", "audit", "query", "--key-id", keyID, "--limit", "2")
	if !strings.Contains(e, "first 2 records") {
		t.Fatalf("a truncated query does not say so: %q", e)
	}

	summary := s.ok(t, "audit", "query", "--key-id", keyID, "--summary")
	for _, want := range []string{"4 records", "provider   openai      3", "principal  svc_claims  4", "decision   allowed     3"} {
		if !strings.Contains(strings.Join(strings.Fields(summary), " "), strings.Join(strings.Fields(want), " ")) {
			t.Fatalf("summary lacks %q:\n%s", want, summary)
		}
	}
	var sum struct {
		Records  int            `json:"records"`
		Provider map[string]int `json:"provider"`
		Decision map[string]int `json:"decision"`
	}
	decode(t, s.ok(t, "audit", "query", "--key-id", keyID, "--summary", "--json"), &sum)
	if sum.Records != 4 || sum.Provider["openai"] != 3 || sum.Decision["allowed"] != 3 {
		t.Fatalf("summary --json: %+v", sum)
	}
	// audit export follows the global --url and --key; its bundle verifies offline.
	bundle := filepath.Join(t.TempDir(), "evidence.tar.gz")
	if o := s.ok(t, "audit", "export", "-q", "-o", bundle); !strings.Contains(o, "wrote "+bundle) {
		t.Fatalf("export: %s", o)
	}
	// (verify's own --key is the trusted verifier key, so no global --key here.)
	var vo, ve strings.Builder
	if code := run([]string{"audit", "verify", bundle}, strings.NewReader(""), &vo, &ve); code != 0 || !strings.Contains(vo.String(), " VALID\n") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, vo.String(), ve.String())
	}
	if _, e, code := s.ctl(t, s.AdminKey, "", "audit", "query", "--decision", "maybe"); code != 2 || !strings.Contains(e, "denied_policy") {
		t.Fatalf("bad decision: exit %d: %s", code, e)
	}
	if _, e, code := s.ctl(t, s.AdminKey, "", "audit", "query", "--from", "yesterday"); code != 2 || !strings.Contains(e, "RFC 3339") {
		t.Fatalf("bad time: exit %d: %s", code, e)
	}
}
