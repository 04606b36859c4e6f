package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

type stack struct {
	url      string
	svc      *identity.Service
	adminKey string
	ctx      context.Context
}

// newStack runs the identity service as the binary does: real NATS, the pepper
// from a real Vault (created on first start) when withVault, else a random one,
// and the platform server over h2c.
func newStack(t *testing.T, withVault bool) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nc, js := platformtest.NATS(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := identity.Config{Environments: []string{"dev", "staging", "prod"}, DevEnvironments: []string{"dev"},
		PepperCreate: true, StagingEnvironment: "staging", ProdEnvironment: "prod"}
	params := identity.Params{Config: cfg, Logger: log, NATS: nc, JetStream: js,
		HandlerOptions: platform.HandlerOptions(platform.InterceptorParams{Logger: log})}
	if withVault {
		params.Vault = platformtest.Vault(t).Client
	} else {
		params.Pepper = []byte(platformtest.RandomID(32))
	}
	svc, err := identity.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	key := identity.GenerateKey("dev")
	if _, err := svc.Bootstrap(ctx, identity.BootstrapParams{Key: key}); err != nil {
		t.Fatal(err)
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "identity", Logger: log, Services: svc.Services})
	if err != nil {
		t.Fatal(err)
	}
	return &stack{url: platformtest.Serve(t, srv.Handler()), svc: svc, adminKey: key, ctx: ctx}
}

type clients struct {
	identity identityv1connect.IdentityServiceClient
	policy   identityv1connect.PolicyServiceClient
	change   identityv1connect.ChangeServiceClient
	prompt   identityv1connect.PromptServiceClient
}

func (s *stack) clients(key string, opts ...connect.ClientOption) clients {
	hc := platform.HTTPClient()
	opts = append(opts, connect.WithInterceptors(bearer(key)))
	return clients{
		identity: identityv1connect.NewIdentityServiceClient(hc, s.url, opts...),
		policy:   identityv1connect.NewPolicyServiceClient(hc, s.url, opts...),
		change:   identityv1connect.NewChangeServiceClient(hc, s.url, opts...),
		prompt:   identityv1connect.NewPromptServiceClient(hc, s.url, opts...),
	}
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}
func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// keyFor returns a bootstrap-admin key for env, creating it on first use.
func (s *stack) keyFor(t *testing.T, env string) string {
	t.Helper()
	if env == "dev" {
		return s.adminKey
	}
	key := identity.GenerateKey(env)
	if _, err := s.svc.Bootstrap(s.ctx, identity.BootstrapParams{Environment: env, Key: key}); err != nil {
		t.Fatal(err)
	}
	return key
}

var protocols = map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}

func code(err error) connect.Code { return connect.CodeOf(err) }

func TestServer_KeyLifecycleAndDecisionsOverConnectAndGRPC(t *testing.T) {
	s := newStack(t, true)
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			admin := s.clients(s.adminKey, opts...)
			ctx := s.ctx
			p, err := admin.identity.CreatePrincipal(ctx, connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
				Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, DisplayName: "support bot " + name, Roles: []string{"app"}, Environments: []string{"dev"}}}))
			if err != nil {
				t.Fatal(err)
			}
			id := p.Msg.Principal.Id
			k, err := admin.identity.CreateApiKey(ctx, connect.NewRequest(&identityv1.CreateApiKeyRequest{PrincipalId: id, Environment: "dev", Name: "bot", TtlSeconds: 3600}))
			if err != nil {
				t.Fatal(err)
			}
			secret := k.Msg.Secret
			if !strings.HasPrefix(secret, "bk_dev_") || k.Msg.ApiKey.ExpireTime == nil {
				t.Fatalf("key = %v", k.Msg.ApiKey)
			}
			anon := s.clients("", opts...)
			auth, err := anon.identity.Authenticate(ctx, connect.NewRequest(&identityv1.AuthenticateRequest{Credential: secret, Environment: "dev"}))
			if err != nil || auth.Msg.Principal.Id != id || auth.Msg.ApiKeyId != k.Msg.ApiKey.Id {
				t.Fatalf("authenticate = %v, %v", auth, err)
			}
			if _, err := anon.identity.Authenticate(ctx, connect.NewRequest(&identityv1.AuthenticateRequest{Credential: secret, Environment: "prod"})); code(err) != connect.CodeUnauthenticated {
				t.Fatalf("dev key in prod: %v", err)
			}
			d, err := admin.policy.Authorize(ctx, connect.NewRequest(&identityv1.AuthorizeRequest{PrincipalId: id, Action: "llm.complete",
				Resource: &identityv1.Resource{Model: "gpt-4o", Environment: "dev"}}))
			if err != nil || !d.Msg.Allowed || d.Msg.PolicyVersion != "0" || d.Msg.Obligations.RedactionProfile == "" {
				t.Fatalf("authorize = %v, %v", d, err)
			}
			// The bot's own key may not administer.
			bot := s.clients(secret, opts...)
			if _, err := bot.identity.ListPrincipals(ctx, connect.NewRequest(&identityv1.ListPrincipalsRequest{})); code(err) != connect.CodePermissionDenied {
				t.Fatalf("bot listing principals: %v", err)
			}
			if _, err := admin.identity.RevokeApiKey(ctx, connect.NewRequest(&identityv1.RevokeApiKeyRequest{Id: k.Msg.ApiKey.Id, Reason: "test"})); err != nil {
				t.Fatal(err)
			}
			if _, err := bot.prompt.ListPrompts(ctx, connect.NewRequest(&identityv1.ListPromptsRequest{})); code(err) != connect.CodeUnauthenticated {
				t.Fatalf("revoked key: %v", err)
			}
			if _, err := anon.identity.ListRoles(ctx, connect.NewRequest(&identityv1.ListRolesRequest{})); code(err) != connect.CodeUnauthenticated {
				t.Fatalf("no credential: %v", err)
			}
		})
	}
}

func TestServer_ChangeWorkflowEnforcesTwoPeopleOverTheWire(t *testing.T) {
	s := newStack(t, false)
	admin := s.clients(s.adminKey)
	ctx := s.ctx
	// Each person holds one key per environment: a key never acts outside its own.
	person := func(role string) map[string]string {
		p, err := admin.identity.CreatePrincipal(ctx, connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
			Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, Roles: []string{role}, Environments: []string{"*"}}}))
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		for _, env := range []string{"dev", "staging", "prod"} {
			adminIn := s.clients(s.keyFor(t, env))
			k, err := adminIn.identity.CreateApiKey(ctx, connect.NewRequest(&identityv1.CreateApiKeyRequest{PrincipalId: p.Msg.Principal.Id, Environment: env}))
			if err != nil {
				t.Fatal(err)
			}
			keys[env] = k.Msg.Secret
		}
		return keys
	}
	devKeys, approverKeys := person("developer"), person("approver")
	dev := s.clients(devKeys["dev"], connect.WithGRPC())
	devStaging := s.clients(devKeys["staging"], connect.WithGRPC())
	approver := s.clients(approverKeys["dev"])
	approverProd := s.clients(approverKeys["prod"])
	c, err := dev.change.ProposeChange(ctx, connect.NewRequest(&identityv1.ProposeChangeRequest{Kind: identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION,
		Target: "support-bot", Content: "Be kind.", Description: "first"}))
	if err != nil {
		t.Fatal(err)
	}
	id := c.Msg.Change.Id
	if _, err := dev.change.ApproveChange(ctx, connect.NewRequest(&identityv1.ApproveChangeRequest{Id: id})); code(err) != connect.CodePermissionDenied {
		t.Fatalf("developer approving: %v", err)
	}
	if _, err := approver.change.ApproveChange(ctx, connect.NewRequest(&identityv1.ApproveChangeRequest{Id: id, Comment: "ok"})); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.change.PromoteChange(ctx, connect.NewRequest(&identityv1.PromoteChangeRequest{Id: id, Environment: "staging"})); code(err) != connect.CodePermissionDenied {
		t.Fatalf("dev key promoting to staging: %v", err)
	}
	if _, err := approverProd.change.PromoteChange(ctx, connect.NewRequest(&identityv1.PromoteChangeRequest{Id: id, Environment: "prod"})); code(err) != connect.CodeFailedPrecondition {
		t.Fatalf("prod before staging: %v", err)
	}
	for _, step := range []func() error{
		func() error {
			_, err := devStaging.change.PromoteChange(ctx, connect.NewRequest(&identityv1.PromoteChangeRequest{Id: id, Environment: "staging"}))
			return err
		},
		func() error {
			_, err := dev.change.AttachEvidence(ctx, connect.NewRequest(&identityv1.AttachEvidenceRequest{Id: id, Evidence: &identityv1.Evidence{Kind: "staging_test_run", Reference: "run-9"}}))
			return err
		},
		func() error {
			_, err := approverProd.change.PromoteChange(ctx, connect.NewRequest(&identityv1.PromoteChangeRequest{Id: id, Environment: "prod"}))
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := approver.prompt.GetPrompt(ctx, connect.NewRequest(&identityv1.GetPromptRequest{Ref: "support-bot", Environment: "prod"}))
	if err != nil || got.Msg.Prompt.Content != "Be kind." || got.Msg.Prompt.Version != 1 {
		t.Fatalf("prompt = %v %v", got, err)
	}
	if _, err := approver.change.GetChange(ctx, connect.NewRequest(&identityv1.GetChangeRequest{Id: "not-a-ulid"})); code(err) != connect.CodeNotFound {
		t.Fatalf("unknown change: %v", err)
	}
	if _, err := dev.change.ProposeChange(ctx, connect.NewRequest(&identityv1.ProposeChangeRequest{Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: "prod", Content: "rules: [{effect: maybe}]"})); code(err) != connect.CodeInvalidArgument {
		t.Fatalf("invalid policy: %v", err)
	}
	v, err := approver.policy.ValidatePolicy(ctx, connect.NewRequest(&identityv1.ValidatePolicyRequest{Document: "rules: [{effect: maybe}]"}))
	if err != nil || v.Msg.Valid || len(v.Msg.Problems) == 0 {
		t.Fatalf("validate = %v %v", v, err)
	}
}

// TestServer_EveryIdentityRPCAgainstEveryRole calls every procedure of the four
// services with a real key of each built-in role and checks that the server lets
// through exactly what the authz table allows.
func TestServer_EveryIdentityRPCAgainstEveryRole(t *testing.T) {
	s := newStack(t, false)
	admin := s.clients(s.adminKey)
	keys := map[string]string{}
	for _, role := range authz.BuiltinRoles() {
		p, err := admin.identity.CreatePrincipal(s.ctx, connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
			Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, Roles: []string{role.Name}, Environments: []string{"dev"}}}))
		if err != nil {
			t.Fatal(err)
		}
		k, err := admin.identity.CreateApiKey(s.ctx, connect.NewRequest(&identityv1.CreateApiKeyRequest{PrincipalId: p.Msg.Principal.Id, Environment: "dev"}))
		if err != nil {
			t.Fatal(err)
		}
		keys[role.Name] = k.Msg.Secret
	}
	checked := 0
	for _, svc := range s.svc.Services {
		for _, rule := range authz.Rules() {
			if !strings.HasPrefix(rule.Procedure, "/"+svc.Name+"/") {
				continue
			}
			for _, role := range authz.BuiltinRoles() {
				want := rule.Public || authz.Allows(role.Permissions, rule.Action)
				body := "{}"
				if rule.Public { // Authenticate: the handler itself needs the credential
					body = `{"credential":"` + keys[role.Name] + `"}`
				}
				got := callRaw(t, s.url, rule.Procedure, keys[role.Name], body)
				if denied := got == "permission_denied" || got == "unauthenticated"; denied == want {
					t.Errorf("%s as %s: got %q, want allowed=%v", rule.Procedure, role.Name, got, want)
				}
				checked++
			}
		}
	}
	if checked != 27*len(authz.BuiltinRoles()) {
		t.Fatalf("checked %d calls, want %d", checked, 27*len(authz.BuiltinRoles()))
	}
}

// callRaw posts a Connect JSON request and returns the error code, or "ok".
func callRaw(t *testing.T, base, procedure, key, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+procedure, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := platform.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "ok"
	}
	var e struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("%s: status %d, undecodable error", procedure, resp.StatusCode)
	}
	return e.Code
}
