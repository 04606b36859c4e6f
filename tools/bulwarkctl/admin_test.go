package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// secretRE matches a Bulwark API key as bulwarkctl prints it once.
var secretRE = regexp.MustCompile(`bk_[a-z]+_[A-Za-z0-9_\-]+`)

// oneSecret returns the only secret in a command's output.
func oneSecret(t *testing.T, out string) string {
	t.Helper()
	m := secretRE.FindAllString(out, -1)
	if len(m) != 1 {
		t.Fatalf("want exactly one secret in the output, got %d:\n%s", len(m), out)
	}
	return m[0]
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

// authenticates reports whether identity accepts the credential.
func (s *stack) authenticates(t *testing.T, key string) bool {
	t.Helper()
	_, err := s.Identity.Authenticate(context.Background(), connect.NewRequest(&identityv1.AuthenticateRequest{Credential: key}))
	if err != nil && connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("authenticate: %v", err)
	}
	return err == nil
}

// chat sends one OpenAI chat completion through the gateway's front door.
func (s *stack) chat(t *testing.T, key, model string, header ...string) (int, string) {
	t.Helper()
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hello from the cli test"}]}`
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return res.StatusCode, res.Header.Get("x-request-id")
}

func TestKeys_CreateListRotateRevoke_SecretShownOnceAndRevokedKeyStopsWorking(t *testing.T) {
	s := startStack(t)
	s.ok(t, "principals", "create", "support", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_support_bot", "--kind", "service", "--role", "app", "--env", "dev", "--team", "support")

	created := s.ok(t, "keys", "create", "--principal", "svc_support_bot", "--env", "dev", "--name", "support-prod")
	secret := oneSecret(t, created)
	if !strings.Contains(created, "shown once") || !strings.Contains(created, "svc_support_bot") {
		t.Fatalf("create output:\n%s", created)
	}
	if !s.authenticates(t, secret) {
		t.Fatal("the new key does not authenticate")
	}

	table := s.ok(t, "keys", "list", "--principal", "svc_support_bot")
	if strings.Contains(table, secret) {
		t.Fatalf("keys list printed a secret:\n%s", table)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "support-prod") || !strings.Contains(lines[1], "active") {
		t.Fatalf("keys list table:\n%s", table)
	}
	var list struct {
		APIKeys []struct {
			ID, PrincipalID, Environment, Prefix string
		} `json:"api_keys"`
	}
	js := s.ok(t, "keys", "list", "--principal", "svc_support_bot", "--json")
	decode(t, js, &list)
	if strings.Contains(js, secret) || len(list.APIKeys) != 1 || !strings.HasPrefix(secret, list.APIKeys[0].Prefix) {
		t.Fatalf("keys list --json: %s", js)
	}
	keyID := list.APIKeys[0].ID

	rotated := s.ok(t, "keys", "rotate", keyID, "--grace", "1h")
	newSecret := oneSecret(t, rotated)
	if newSecret == secret || !s.authenticates(t, newSecret) || !s.authenticates(t, secret) {
		t.Fatalf("after rotation with a grace period both keys should work and differ:\n%s", rotated)
	}
	if code, _ := s.chat(t, newSecret, "gpt-4o-mini"); code != http.StatusOK {
		t.Fatalf("the rotated key was refused by the gateway: %d", code)
	}

	listed := s.ok(t, "keys", "list", "--principal", "svc_support_bot")
	if !strings.Contains(listed, "rotating to") {
		t.Fatalf("the old key does not show its rotation:\n%s", listed)
	}
	newID := ""
	for _, line := range strings.Split(listed, "\n") {
		if strings.Contains(line, "active") {
			newID = strings.Fields(line)[0]
		}
	}
	if newID == "" {
		t.Fatalf("no active successor listed:\n%s", listed)
	}

	revoked := s.ok(t, "keys", "revoke", newID, "--reason", "leaked in a ticket")
	if !strings.Contains(revoked, "revoked "+newID) {
		t.Fatalf("revoke output: %s", revoked)
	}
	if s.authenticates(t, newSecret) {
		t.Fatal("a revoked key still authenticates")
	}
	if code, _ := s.chat(t, newSecret, "gpt-4o-mini"); code != http.StatusUnauthorized {
		t.Fatalf("the gateway answered %d to a revoked key, want 401", code)
	}
	// A revoked key cannot drive bulwarkctl either, and the error says why.
	o, e, code := s.ctl(t, newSecret, "", "keys", "list")
	if code != 2 || !strings.Contains(e, "unauthenticated") || o != "" {
		t.Fatalf("revoked key: exit %d\nstdout:\n%s\nstderr:\n%s", code, o, e)
	}
	all := s.ok(t, "keys", "list", "--principal", "svc_support_bot", "--all")
	if !strings.Contains(all, "revoked") {
		t.Fatalf("keys list --all does not show the revoked key:\n%s", all)
	}
}

func TestPrincipals_TableAndJSON_DisabledPrincipalsKeysStopWorking(t *testing.T) {
	s := startStack(t)
	var created struct {
		Principal struct {
			ID           string   `json:"id"`
			Kind         string   `json:"kind"`
			Roles        []string `json:"roles"`
			Environments []string `json:"environments"`
		} `json:"principal"`
	}
	decode(t, s.ok(t, "--json", "principals", "create", "svc_billing", "--role", "app", "--env", "dev", "--env", "staging", "--name", "Billing"), &created)
	if created.Principal.ID != "svc_billing" || created.Principal.Kind != "PRINCIPAL_KIND_SERVICE" || len(created.Principal.Environments) != 2 {
		t.Fatalf("created: %+v", created)
	}
	got := s.ok(t, "principals", "get", "svc_billing")
	for _, want := range []string{"svc_billing", "service", "Billing", "dev,staging", "active"} {
		if !strings.Contains(got, want) {
			t.Fatalf("principals get lacks %q:\n%s", want, got)
		}
	}
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_billing", "--env", "dev"))

	list := s.ok(t, "principals", "list", "--kind", "service")
	if !strings.Contains(list, "svc_billing") || !strings.HasPrefix(list, "ID") {
		t.Fatalf("principals list:\n%s", list)
	}
	if out := s.ok(t, "principals", "disable", "svc_billing", "--reason", "decommissioned"); !strings.Contains(out, "disabled svc_billing") {
		t.Fatalf("disable: %s", out)
	}
	if s.authenticates(t, secret) {
		t.Fatal("a disabled principal's key still authenticates")
	}
	var one struct {
		Principal struct {
			Disabled bool `json:"disabled"`
		} `json:"principal"`
	}
	decode(t, s.ok(t, "principals", "get", "svc_billing", "--json"), &one)
	if !one.Principal.Disabled {
		t.Fatal("principals get --json does not show the principal disabled")
	}

	roles := s.ok(t, "roles", "list")
	for _, want := range []string{"admin", "approver", "app", "viewer"} {
		if !strings.Contains(roles, want) {
			t.Fatalf("roles list lacks %s:\n%s", want, roles)
		}
	}
	_, e, code := s.ctl(t, s.AdminKey, "", "principals", "create", "--kind", "robot")
	if code != 2 || !strings.Contains(e, "one of: person, service, team") {
		t.Fatalf("bad kind: exit %d: %s", code, e)
	}
}

func TestCommands_NeedACredential_AndWorkOverGRPC(t *testing.T) {
	s := startStack(t)
	t.Setenv("BULWARK_KEY", "")
	var outB, errB strings.Builder
	if code := run([]string{"--url", s.URL, "roles", "list"}, strings.NewReader(""), &outB, &errB); code != 2 || !strings.Contains(errB.String(), "BULWARK_KEY") {
		t.Fatalf("no key: exit %d: %s", code, errB.String())
	}
	t.Setenv("BULWARK_KEY", s.AdminKey)
	t.Setenv("BULWARK_URL", s.URL)
	outB.Reset()
	errB.Reset()
	if code := run([]string{"--grpc", "roles", "list", "--json"}, strings.NewReader(""), &outB, &errB); code != 0 {
		t.Fatalf("gRPC with env credentials: exit %d: %s", code, errB.String())
	}
	var roles struct {
		Roles []struct{ Name string } `json:"roles"`
	}
	decode(t, outB.String(), &roles)
	if len(roles.Roles) < 5 {
		t.Fatalf("roles over gRPC: %s", outB.String())
	}
	_, e, code := s.ctl(t, "bk_dev_not-a-real-key", "", "roles", "list")
	if code != 2 || !strings.Contains(e, "unauthenticated") || strings.Contains(e, "not-a-real-key") {
		t.Fatalf("bad key: exit %d: %s", code, e)
	}
}

func tempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompletion_BashScriptCompletesSubcommandsAndFlagValues(t *testing.T) {
	var outB, errB strings.Builder
	if code := run([]string{"completion", "bash"}, strings.NewReader(""), &outB, &errB); code != 0 || !strings.Contains(outB.String(), "__start_bulwarkctl") {
		t.Fatalf("completion bash: exit %d: %s", code, errB.String())
	}
	outB.Reset()
	if code := run([]string{"__complete", "audit", "query", "--decision", "denied_"}, strings.NewReader(""), &outB, &errB); code != 0 {
		t.Fatalf("__complete: exit %d: %s", code, errB.String())
	}
	for _, want := range []string{"denied_policy", "denied_rate_limit", "allowed"} {
		if !strings.Contains(outB.String(), want) {
			t.Fatalf("--decision completions lack %s:\n%s", want, outB.String())
		}
	}
	outB.Reset()
	if code := run([]string{"__complete", "provider", ""}, strings.NewReader(""), &outB, &errB); code != 0 ||
		!strings.Contains(outB.String(), "disable") || !strings.Contains(outB.String(), "enable") {
		t.Fatalf("provider subcommand completions: %s", outB.String())
	}
}
