package stack

import "strings"

// common gives a service its connections to the real Redis, NATS and Vault
// through the platform kit's standard variables (BULWARK_<SVC>_REDIS_ADDR,
// _NATS_URL, _VAULT_ADDR, _VAULT_TOKEN), and text logs.
func common(name string, s *Stack) map[string]string {
	p := "BULWARK_" + strings.ToUpper(name) + "_"
	return map[string]string{
		p + "LOG_FORMAT":  "text",
		p + "REDIS_ADDR":  s.Redis(),
		p + "NATS_URL":    s.NATS(),
		p + "VAULT_ADDR":  s.VaultAddr,
		p + "VAULT_TOKEN": s.VaultToken,
	}
}

func spec(name string, services []string, extra func(s *Stack, env map[string]string)) Spec {
	return Spec{Name: name, ServiceNames: services, Env: func(s *Stack) map[string]string {
		env := common(name, s)
		if extra != nil {
			extra(s, env)
		}
		return env
	}}
}

// Services returns every service in an order that starts dependencies first.
func Services() []Spec {
	return []Spec{
		spec("redaction", []string{"bulwark.redaction.v1.RedactionService"}, nil),
		spec("identity", []string{
			"bulwark.identity.v1.IdentityService", "bulwark.identity.v1.PolicyService",
			"bulwark.identity.v1.PromptService", "bulwark.identity.v1.ChangeService",
		}, nil),
		spec("ratelimit", []string{"bulwark.ratelimit.v1.RateLimitService"}, nil),
		spec("router", []string{"bulwark.router.v1.RouterService"}, nil),
		spec("audit", []string{"bulwark.audit.v1.AuditService"}, nil),
		spec("gateway", []string{"bulwark.gateway.v1.GatewayService"}, func(s *Stack, env map[string]string) {
			for _, dep := range []string{"identity", "redaction", "ratelimit", "router", "audit"} {
				env["BULWARK_GATEWAY_"+strings.ToUpper(dep)+"_URL"] = s.URL(dep)
			}
		}),
	}
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
