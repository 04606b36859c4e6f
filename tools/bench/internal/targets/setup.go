package targets

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/chat"
)

// BenchPolicy is installed in the dev environment before a run: the full
// pipeline stays on (the default redaction profile, exact request limits in
// Redis that fail closed, audit with payload hashes), with a limit far above
// any rate the bench offers so a run measures the pipeline, not refusals.
// gpt-4o-mini is denied only so the bench can tell that the policy is in force.
const BenchPolicy = `defaults:
  redaction_profile: default
  rate_limit_failure_mode: closed
  payload_retention: hash_only
  limits:
    - name: bench-requests-per-minute
      kind: requests
      dimensions: [principal]
      limit: 100000000
      period: 1m
      burst: 10000000
providers:
  openai: {dpa: true, zero_retention: false, region: us}
  anthropic: {dpa: true, zero_retention: true, region: us}
  azure: {dpa: true, zero_retention: false, region: us}
rules:
  - name: apps-may-call-llms
    effect: allow
    roles: [app]
    actions: ["llm.*"]
  - name: policy-probe
    effect: deny
    models: ["gpt-4o-mini"]
`

type admin struct {
	id     identityv1connect.IdentityServiceClient
	change identityv1connect.ChangeServiceClient
	token  string
}

func newAdmin(hc *http.Client, identityURL, token string) *admin {
	return &admin{id: identityv1connect.NewIdentityServiceClient(hc, identityURL),
		change: identityv1connect.NewChangeServiceClient(hc, identityURL), token: token}
}

func authed[T any](a *admin, m *T) *connect.Request[T] {
	r := connect.NewRequest(m)
	r.Header().Set("Authorization", "Bearer "+a.token)
	return r
}

func (a *admin) principal(ctx context.Context, id, team, env string, roles ...string) (string, error) {
	kind := identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE
	if strings.HasPrefix(id, "usr_") {
		kind = identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON
	}
	if _, err := a.id.CreatePrincipal(ctx, authed(a, &identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
		Id: team, Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM, DisplayName: team,
	}})); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return "", fmt.Errorf("create team: %w", err)
	}
	if _, err := a.id.CreatePrincipal(ctx, authed(a, &identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
		Id: id, Kind: kind, DisplayName: id, TeamId: team, Roles: roles, Environments: []string{env},
	}})); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return "", fmt.Errorf("create principal %s: %w", id, err)
	}
	res, err := a.id.CreateApiKey(ctx, authed(a, &identityv1.CreateApiKeyRequest{PrincipalId: id, Environment: env, Name: id + "-key"}))
	if err != nil {
		return "", fmt.Errorf("create key for %s: %w", id, err)
	}
	return res.Msg.GetSecret(), nil
}

// Provision creates the bench's app principal, installs BenchPolicy through the
// change workflow (proposed by the admin, approved by a separate approver,
// promoted) and waits until the gateway enforces it. It returns the app's key.
func Provision(ctx context.Context, identityURL, gatewayURL, adminKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	adm := newAdmin(hc, identityURL, adminKey)
	appKey, err := adm.principal(ctx, "svc_bench_app", "team_bench", "dev", "app")
	if err != nil {
		return "", err
	}
	approverKey, err := adm.principal(ctx, "usr_bench_approver", "team_bench", "dev", "approver")
	if err != nil {
		return "", err
	}
	pc, err := adm.change.ProposeChange(ctx, authed(adm, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: "dev", Content: BenchPolicy, Description: "load benchmark policy"}))
	if err != nil {
		return "", fmt.Errorf("propose the bench policy: %w", err)
	}
	id := pc.Msg.GetChange().GetId()
	approver := newAdmin(hc, identityURL, approverKey)
	if _, err := approver.change.ApproveChange(ctx, authed(approver, &identityv1.ApproveChangeRequest{Id: id, Comment: "bench"})); err != nil {
		return "", fmt.Errorf("approve the bench policy: %w", err)
	}
	if _, err := adm.change.PromoteChange(ctx, authed(adm, &identityv1.PromoteChangeRequest{Id: id, Environment: "dev"})); err != nil {
		return "", fmt.Errorf("promote the bench policy: %w", err)
	}
	// The gateway drops cached decisions on policy_changed: wait until the probe model is denied.
	body, _ := chat.Body("gpt-4o-mini", "is the bench policy in force?", false)
	probe := &chat.Client{HC: hc, URL: gatewayURL + "/v1/chat/completions", Key: appKey, Body: body}
	for {
		status, _, _ := probe.Answer(ctx)
		if status == http.StatusForbidden {
			return appKey, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the bench policy is not in force (last status %d)", status)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
