package platform_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// TestVault_KubernetesAuthLogsInWithTheServiceAccountToken runs the real
// Vault Kubernetes auth method. No cluster runs here, so the one Kubernetes
// API it calls — TokenReview — is answered by a local endpoint that accepts
// exactly one service-account token.
func TestVault_KubernetesAuthLogsInWithTheServiceAccountToken(t *testing.T) {
	claims, _ := json.Marshal(map[string]string{
		"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:bulwark:router",
		"kubernetes.io/serviceaccount/namespace":            "bulwark",
		"kubernetes.io/serviceaccount/service-account.name": "router",
		"kubernetes.io/serviceaccount/service-account.uid":  "u-1",
	})
	saToken := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
	review := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Spec struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		status := map[string]any{"authenticated": false}
		if req.Spec.Token == saToken {
			status = map[string]any{"authenticated": true, "user": map[string]any{
				"username": "system:serviceaccount:bulwark:router", "uid": "u-1",
				"groups": []string{"system:serviceaccounts"},
			}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
	}))
	defer review.Close()

	vs := platformtest.Vault(t)
	ctx := context.Background()
	if err := vs.Client.Sys().EnableAuthWithOptions("kubernetes", &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Client.Logical().Write("auth/kubernetes/config", map[string]any{
		"kubernetes_host": review.URL, "disable_local_ca_jwt": true, "token_reviewer_jwt": "reviewer",
	}); err != nil {
		t.Fatal(err)
	}
	if err := vs.Client.Sys().PutPolicy("router", `path "secret/data/bulwark/prod/providers/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Client.Logical().Write("auth/kubernetes/role/bulwark-router", map[string]any{
		"bound_service_account_names": "router", "bound_service_account_namespaces": "bulwark", "token_policies": "router", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Client.KVv2("secret").Put(ctx, "bulwark/prod/providers/openai", map[string]any{"api_key": "sk-prod"}); err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenPath, []byte(saToken), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := platform.NewLogger("json", "error")
	c, err := platform.NewVault(ctx, platform.VaultConfig{Addr: vs.Addr, KubernetesRole: "bulwark-router", KubernetesMount: "kubernetes", KubernetesTokenPath: tokenPath}, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.KVv2("secret").Get(ctx, "bulwark/prod/providers/openai")
	if err != nil || s.Data["api_key"] != "sk-prod" {
		t.Fatalf("read = %v, %v", s, err)
	}
	if _, err := c.KVv2("secret").Get(ctx, "bulwark/identity/pepper"); err == nil {
		t.Fatal("the router role read outside its policy")
	}
	if err := os.WriteFile(tokenPath, []byte("not-the-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := platform.NewVault(ctx, platform.VaultConfig{Addr: vs.Addr, KubernetesRole: "bulwark-router", KubernetesMount: "kubernetes", KubernetesTokenPath: tokenPath}, log); err == nil {
		t.Fatal("login with a token the cluster does not vouch for succeeded")
	}
}
