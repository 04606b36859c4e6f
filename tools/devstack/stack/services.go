package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
)

// The variables below are the services' real Config fields (see each
// services/<svc> Config struct and its `env:` tags, plus the platform kit's
// NATSConfig, RedisConfig and VaultConfig); a wrong name would be silently
// ignored and the service would fall back to its default.

func prefix(name string) string { return "BULWARK_" + strings.ToUpper(name) + "_" }

func base(name string) map[string]string {
	return map[string]string{prefix(name) + "LOG_FORMAT": "text"}
}

func withNATS(name string, s *Stack, env map[string]string) {
	env[prefix(name)+"NATS_URL"] = s.NATS()
	env[prefix(name)+"NATS_CLIENT_NAME"] = "bulwark-" + name
}

func withVault(name string, s *Stack, env map[string]string) {
	env[prefix(name)+"VAULT_ADDR"] = s.VaultAddr
	env[prefix(name)+"VAULT_TOKEN"] = s.VaultToken
}

// withAuth points a service at identity, presenting the stack's system key, so it
// authenticates and authorizes every caller. A stack started without identity (e.g.
// Only("redaction")) has no system key: the service then runs with authentication
// disabled, explicitly.
func withAuth(name string, s *Stack, env map[string]string) {
	if s.SystemKey == "" {
		env[prefix(name)+"AUTH_DISABLED"] = "true"
		return
	}
	env[prefix(name)+"IDENTITY_URL"] = s.URL("identity")
	env[prefix(name)+"SERVICE_CREDENTIAL"] = s.SystemKey
}

// Services returns every service in an order that starts dependencies first
// (identity first: the others ask it for decisions with the key it issues).
func Services() []Spec {
	return []Spec{
		{Name: "identity", ServiceNames: []string{
			"bulwark.identity.v1.IdentityService", "bulwark.identity.v1.PolicyService",
			"bulwark.identity.v1.PromptService", "bulwark.identity.v1.ChangeService",
		}, Env: func(s *Stack) map[string]string {
			env := base("identity")
			withNATS("identity", s, env)
			withVault("identity", s, env)
			env["BULWARK_IDENTITY_PEPPER_CREATE"] = "true"
			env["BULWARK_IDENTITY_BUCKET"] = s.bucket
			env["BULWARK_BOOTSTRAP_ADMIN_KEY"] = s.AdminKey
			return env
		}, After: registerSystemPrincipal},
		// audit before the services that publish to or read its stream.
		{Name: "audit", ServiceNames: []string{"bulwark.audit.v1.AuditService"}, Env: func(s *Stack) map[string]string {
			env := base("audit")
			withNATS("audit", s, env)
			withVault("audit", s, env)
			withAuth("audit", s, env)
			env["BULWARK_AUDIT_CHECKPOINT_INTERVAL"] = "250ms"
			return env
		}},
		// redaction, ratelimit and router after identity: they authenticate every caller with it.
		{Name: "redaction", ServiceNames: []string{"bulwark.redaction.v1.RedactionService"},
			Env: func(s *Stack) map[string]string {
				env := base("redaction")
				withAuth("redaction", s, env)
				// one hash key for the stack, so hash replacements are stable across restarts.
				env["BULWARK_REDACTION_HASH_KEY"] = s.hashKey
				return env
			}},
		{Name: "ratelimit", ServiceNames: []string{"bulwark.ratelimit.v1.RateLimitService"}, Env: func(s *Stack) map[string]string {
			env := base("ratelimit")
			withNATS("ratelimit", s, env)
			withAuth("ratelimit", s, env)
			env["BULWARK_RATELIMIT_REDIS_ADDR"] = s.Redis()
			env["BULWARK_RATELIMIT_KEY_PREFIX"] = s.params.KeyPrefix
			return env
		}},
		{Name: "router", ServiceNames: []string{"bulwark.router.v1.RouterService"}, Env: func(s *Stack) map[string]string {
			env := base("router")
			withNATS("router", s, env)
			withAuth("router", s, env)
			withVault("router", s, env)
			env["BULWARK_ROUTER_SIMULATOR_URL"] = s.SimulatorURL
			return env
		}},
		{Name: "gateway", ServiceNames: []string{"bulwark.gateway.v1.GatewayService"}, Env: func(s *Stack) map[string]string {
			env := base("gateway")
			withNATS("gateway", s, env)
			withVault("gateway", s, env)
			for _, dep := range []string{"identity", "redaction", "ratelimit", "router"} {
				env["BULWARK_GATEWAY_"+strings.ToUpper(dep)+"_URL"] = s.URL(dep)
			}
			env["BULWARK_GATEWAY_SERVICE_TOKEN"] = s.SystemKey
			env["BULWARK_GATEWAY_SPOOL_DIR"] = filepath.Join(s.DataDir(), "gateway-spool")
			env["BULWARK_GATEWAY_SHUTDOWN_TIMEOUT"] = "20s"
			return env
		}},
	}
}

// systemPrincipal is the stack's internal service principal (role system), whose
// key the gateway, audit, redaction, ratelimit and router present to the other services.
const systemPrincipal = "svc_devstack_system"

// registerSystemPrincipal creates the system principal with the bootstrap admin's key
// and issues its key for the stack's environment.
func registerSystemPrincipal(ctx context.Context, s *Stack) error {
	if s.AdminKey == "" {
		return nil
	}
	hc := s.httpClient()
	ids := identityv1connect.NewIdentityServiceClient(hc, s.URL("identity"))
	cp := connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
		Id: systemPrincipal, Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, DisplayName: "devstack services",
		Roles: []string{"system"}, Environments: []string{"*"},
	}})
	cp.Header().Set("Authorization", "Bearer "+s.AdminKey)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := ids.CreatePrincipal(ctx, cp); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return fmt.Errorf("create the system principal: %w", err)
	}
	ck := connect.NewRequest(&identityv1.CreateApiKeyRequest{PrincipalId: systemPrincipal, Environment: s.params.Environment, Name: "devstack"})
	ck.Header().Set("Authorization", "Bearer "+s.AdminKey)
	res, err := ids.CreateApiKey(ctx, ck)
	if err != nil {
		return fmt.Errorf("create the system key: %w", err)
	}
	s.SystemKey = res.Msg.GetSecret()
	return nil
}

// Only returns the specs of the named services, in Services() order.
func Only(names ...string) []Spec {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []Spec
	for _, s := range Services() {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out
}
