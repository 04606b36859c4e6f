package authz_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1"
	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	_ "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
)

// expected is the authorization matrix, written out independently of the table:
// for every RPC, the built-in roles that may call it ("public" for no credential).
// Adding an RPC to a proto without a line here (and a rule in the table) fails.
var expected = map[string]string{
	"/bulwark.identity.v1.IdentityService/Authenticate":     "public",
	"/bulwark.identity.v1.IdentityService/CreatePrincipal":  "admin",
	"/bulwark.identity.v1.IdentityService/GetPrincipal":     "admin approver developer viewer system",
	"/bulwark.identity.v1.IdentityService/ListPrincipals":   "admin approver developer viewer system",
	"/bulwark.identity.v1.IdentityService/UpdatePrincipal":  "admin",
	"/bulwark.identity.v1.IdentityService/DisablePrincipal": "admin",
	"/bulwark.identity.v1.IdentityService/CreateApiKey":     "admin",
	"/bulwark.identity.v1.IdentityService/ListApiKeys":      "admin approver developer viewer",
	"/bulwark.identity.v1.IdentityService/RevokeApiKey":     "admin",
	"/bulwark.identity.v1.IdentityService/RotateApiKey":     "admin",
	"/bulwark.identity.v1.IdentityService/ListRoles":        "admin approver developer viewer system",
	"/bulwark.identity.v1.IdentityService/PutRole":          "admin",

	"/bulwark.identity.v1.PolicyService/Authorize":          "admin system",
	"/bulwark.identity.v1.PolicyService/GetPolicy":          "admin approver developer viewer",
	"/bulwark.identity.v1.PolicyService/ListPolicyVersions": "admin approver developer viewer",
	"/bulwark.identity.v1.PolicyService/ValidatePolicy":     "admin approver developer viewer",

	"/bulwark.identity.v1.PromptService/GetPrompt":          "admin approver developer viewer app system",
	"/bulwark.identity.v1.PromptService/ListPrompts":        "admin approver developer viewer app system",
	"/bulwark.identity.v1.PromptService/ListPromptVersions": "admin approver developer viewer app system",

	"/bulwark.identity.v1.ChangeService/ProposeChange":  "admin developer",
	"/bulwark.identity.v1.ChangeService/ApproveChange":  "admin approver",
	"/bulwark.identity.v1.ChangeService/RejectChange":   "admin approver",
	"/bulwark.identity.v1.ChangeService/AttachEvidence": "admin approver developer",
	"/bulwark.identity.v1.ChangeService/PromoteChange":  "admin approver developer",
	"/bulwark.identity.v1.ChangeService/BreakGlass":     "admin",
	"/bulwark.identity.v1.ChangeService/GetChange":      "admin approver developer viewer",
	"/bulwark.identity.v1.ChangeService/ListChanges":    "admin approver developer viewer",

	"/bulwark.audit.v1.AuditService/Query":               "admin approver developer viewer",
	"/bulwark.audit.v1.AuditService/GetRecord":           "admin approver developer viewer",
	"/bulwark.audit.v1.AuditService/GetCheckpoint":       "admin approver developer viewer",
	"/bulwark.audit.v1.AuditService/GetConsistencyProof": "admin approver developer viewer",
	"/bulwark.audit.v1.AuditService/GetPublicKey":        "public",
	"/bulwark.audit.v1.AuditService/ExportEvidence":      "admin approver",

	"/bulwark.gateway.v1.GatewayService/ChatComplete":       "admin developer app",
	"/bulwark.gateway.v1.GatewayService/StreamChatComplete": "admin developer app",
	"/bulwark.gateway.v1.GatewayService/ListModels":         "admin approver developer viewer app system",

	"/bulwark.ratelimit.v1.RateLimitService/Reserve":      "admin system",
	"/bulwark.ratelimit.v1.RateLimitService/ReserveBatch": "admin system",
	"/bulwark.ratelimit.v1.RateLimitService/Settle":       "admin system",
	"/bulwark.ratelimit.v1.RateLimitService/Release":      "admin system",
	"/bulwark.ratelimit.v1.RateLimitService/GetUsage":     "admin approver developer viewer",
	"/bulwark.ratelimit.v1.RateLimitService/ListAlerts":   "admin approver developer viewer",

	"/bulwark.redaction.v1.RedactionService/Redact":       "admin system",
	"/bulwark.redaction.v1.RedactionService/Restore":      "admin system",
	"/bulwark.redaction.v1.RedactionService/Inspect":      "admin system",
	"/bulwark.redaction.v1.RedactionService/ListProfiles": "admin approver developer viewer system",

	"/bulwark.router.v1.RouterService/Complete":           "admin system",
	"/bulwark.router.v1.RouterService/StreamComplete":     "admin system",
	"/bulwark.router.v1.RouterService/Embed":              "admin system",
	"/bulwark.router.v1.RouterService/ListModels":         "admin approver developer viewer system",
	"/bulwark.router.v1.RouterService/ListProviders":      "admin approver developer viewer system",
	"/bulwark.router.v1.RouterService/PutProvider":        "admin",
	"/bulwark.router.v1.RouterService/SetProviderEnabled": "admin",
	"/bulwark.router.v1.RouterService/ListRoutes":         "admin approver developer viewer system",
	"/bulwark.router.v1.RouterService/PutRoute":           "admin",
}

// protoProcedures lists every RPC of every bulwark service in the generated descriptors.
func protoProcedures(t *testing.T) []string {
	t.Helper()
	var out []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "bulwark.") {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}

func TestTable_EveryRPCOfEveryServiceHasARuleAndAnExpectation(t *testing.T) {
	procs := protoProcedures(t)
	services := map[string]bool{}
	for _, p := range procs {
		services[strings.Split(p, "/")[1]] = true
	}
	if len(services) != 9 {
		t.Fatalf("found %d services in the descriptors, want the 9 of the six packages: %v", len(services), services)
	}
	for _, p := range procs {
		if _, ok := authz.RuleFor(p); !ok {
			t.Errorf("%s has no rule in the authz table", p)
		}
		if _, ok := expected[p]; !ok {
			t.Errorf("%s has no line in the expected matrix", p)
		}
	}
	for _, r := range authz.Rules() {
		if !slices.Contains(procs, r.Procedure) {
			t.Errorf("rule for %s, which no proto defines", r.Procedure)
		}
	}
}

func TestTable_EveryRoleAgainstEveryRPC(t *testing.T) {
	roles := authz.BuiltinRoles()
	for _, proc := range protoProcedures(t) {
		rule, ok := authz.RuleFor(proc)
		if !ok {
			continue // reported by the test above
		}
		want := strings.Fields(expected[proc])
		if slices.Equal(want, []string{"public"}) {
			if !rule.Public || rule.Action != "" {
				t.Errorf("%s should be public", proc)
			}
			continue
		}
		if rule.Public || rule.Action == "" {
			t.Errorf("%s is public but should need a role", proc)
			continue
		}
		for _, role := range roles {
			got := authz.Allows(role.Permissions, rule.Action)
			if got != slices.Contains(want, role.Name) {
				t.Errorf("%s (%s) for role %s: allowed=%v, want %v", proc, rule.Action, role.Name, got, !got)
			}
		}
	}
}

func TestMatches_WildcardsAndPrefixes(t *testing.T) {
	cases := []struct {
		perm, action string
		want         bool
	}{
		{"*", "change.approve", true},
		{"change.*", "change.approve", true},
		{"change.*", "changes.approve", false},
		{"change.*", "change", false},
		{"identity.apikey.*", "identity.apikey.create", true},
		{"identity.apikey.create", "identity.apikey.create", true},
		{"identity.apikey.create", "identity.apikey.revoke", false},
	}
	for _, tc := range cases {
		if got := authz.Matches(tc.perm, tc.action); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v", tc.perm, tc.action, got)
		}
	}
}

func TestBuiltinRoles_AreCopies(t *testing.T) {
	r, _ := authz.Builtin(authz.RoleViewer)
	r.Permissions[0] = "*"
	again, _ := authz.Builtin(authz.RoleViewer)
	if again.Permissions[0] == "*" {
		t.Fatal("caller changed a built-in role")
	}
}
