package manifests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	vault "github.com/hashicorp/vault/api"
)

const setupScript = repoRoot + "/deploy/vault/setup.sh"

// runSetup runs deploy/vault/setup.sh against vs with the real vault CLI.
func runSetup(t *testing.T, vs *platformtest.VaultServer, envs string) string {
	t.Helper()
	bin, err := platformtest.VaultBinary()
	if err != nil {
		t.Fatalf("this test needs a real Vault: %v", err)
	}
	cmd := exec.Command("bash", setupScript)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+vs.Addr, "VAULT_TOKEN="+vs.Token, "VAULT_BIN="+bin,
		"BULWARK_KEY_ENVIRONMENTS="+envs, "HOME="+t.TempDir(), "KUBERNETES_HOST=https://kubernetes.default.svc",
		"KUBERNETES_CA_CERT="+testCA(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	return string(out)
}

// testCA writes a self-signed CA certificate, standing in for the cluster's
// (this Vault runs outside any cluster, so it has none of its own).
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// login logs in as a service through its AppRole, as the pods do.
func login(t *testing.T, vs *platformtest.VaultServer, svc string) *vault.Client {
	t.Helper()
	ctx := context.Background()
	root := vs.Client
	rid, err := root.Logical().ReadWithContext(ctx, "auth/approle/role/bulwark-"+svc+"/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().WriteWithContext(ctx, "auth/approle/role/bulwark-"+svc+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vault.DefaultConfig()
	cfg.Address = vs.Addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("")
	sec, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
		"role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"]})
	if err != nil {
		t.Fatalf("approle login as %s: %v", svc, err)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}

// probes are paths whose capabilities tell each service's reach.
var probes = []string{
	"secret/data/bulwark/prod/providers/openai",
	"secret/metadata/bulwark/prod/providers/openai",
	"secret/data/bulwark/dev/providers/anthropic",
	"secret/data/bulwark/qa/providers/openai", // not a configured environment
	"secret/data/bulwark/prod/other",
	"secret/data/bulwark/identity/pepper",
	"secret/data/bulwark/audit/payload-hmac",
	"transit/keys/bulwark-audit-checkpoints",
	"transit/sign/bulwark-audit-checkpoints",
	"transit/verify/bulwark-audit-checkpoints",
	"transit/keys/bulwark-audit-checkpoints/rotate",
	"transit/export/signing-key/bulwark-audit-checkpoints",
	"transit/sign/another-key",
	"sys/policy/bulwark-router",
	"auth/approle/role/bulwark-router/secret-id",
}

// wantCaps is least privilege spelled out: any probe not listed is denied.
var wantCaps = map[string]map[string][]string{
	"router": {
		"secret/data/bulwark/prod/providers/openai":     {"read"},
		"secret/metadata/bulwark/prod/providers/openai": {"read"},
		"secret/data/bulwark/dev/providers/anthropic":   {"read"},
	},
	"audit": {
		"transit/keys/bulwark-audit-checkpoints": {"read"},
		"transit/sign/bulwark-audit-checkpoints": {"update"},
	},
	"identity": {"secret/data/bulwark/identity/pepper": {"read"}},
	"gateway":  {"secret/data/bulwark/audit/payload-hmac": {"read"}},
}

func TestVaultSetup_GivesEachServiceOnlyItsPaths(t *testing.T) {
	vs := platformtest.Vault(t)
	runSetup(t, vs, "dev prod")
	ctx := context.Background()
	for svc, want := range wantCaps {
		t.Run(svc, func(t *testing.T) {
			c := login(t, vs, svc)
			sec, err := c.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": probes})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range probes {
				var got []string
				if raw, ok := sec.Data[p].([]any); ok {
					for _, c := range raw {
						got = append(got, c.(string))
					}
				}
				slices.Sort(got)
				exp := want[p]
				if exp == nil {
					exp = []string{"deny"}
				}
				if !slices.Equal(got, exp) {
					t.Errorf("%s on %s: capabilities %v, want %v", svc, p, got, exp)
				}
			}
		})
	}
}

func TestVaultSetup_ServicesCanDoTheirJobAndIsIdempotent(t *testing.T) {
	vs := platformtest.Vault(t)
	runSetup(t, vs, "dev prod")
	ctx := context.Background()
	if _, err := vs.Client.KVv2("secret").Put(ctx, "bulwark/prod/providers/openai", map[string]any{"api_key": "sk-test-not-real"}); err != nil {
		t.Fatal(err)
	}

	router := login(t, vs, "router")
	if s, err := router.KVv2("secret").Get(ctx, "bulwark/prod/providers/openai"); err != nil || s.Data["api_key"] != "sk-test-not-real" {
		t.Fatalf("router reads its provider key: %v", err)
	}
	if _, err := router.KVv2("secret").Get(ctx, "bulwark/identity/pepper"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("router read the pepper: err %v, want permission denied", err)
	}
	if _, err := router.KVv2("secret").Put(ctx, "bulwark/prod/providers/openai", map[string]any{"api_key": "x"}); err == nil {
		t.Fatal("router could overwrite a provider key")
	}

	identity := login(t, vs, "identity")
	pep, err := identity.KVv2("secret").Get(ctx, "bulwark/identity/pepper")
	if err != nil {
		t.Fatalf("identity reads its pepper: %v", err)
	}
	first := pep.Data["pepper"].(string)
	if b, err := base64.StdEncoding.DecodeString(first); err != nil || len(b) != 32 {
		t.Fatalf("pepper is not 32 base64 bytes: %v", err)
	}

	gateway := login(t, vs, "gateway")
	hk, err := gateway.KVv2("secret").Get(ctx, "bulwark/audit/payload-hmac")
	if err != nil {
		t.Fatalf("gateway reads the payload-HMAC key: %v", err)
	}
	if b, err := base64.StdEncoding.DecodeString(hk.Data["key"].(string)); err != nil || len(b) != 32 {
		t.Fatalf("payload-HMAC key is not 32 base64 bytes: %v", err)
	}

	audit := login(t, vs, "audit")
	sig, err := audit.Logical().WriteWithContext(ctx, "transit/sign/bulwark-audit-checkpoints",
		map[string]any{"input": base64.StdEncoding.EncodeToString([]byte("checkpoint"))})
	if err != nil || !strings.HasPrefix(sig.Data["signature"].(string), "vault:v1:") {
		t.Fatalf("audit signs a checkpoint: %v", err)
	}
	key, err := audit.Logical().ReadWithContext(ctx, "transit/keys/bulwark-audit-checkpoints")
	if err != nil || key.Data["type"] != "ed25519" || key.Data["exportable"] != false {
		t.Fatalf("signing key: %v %v", key, err)
	}

	// A second run changes no key.
	runSetup(t, vs, "dev prod")
	again, err := identity.KVv2("secret").Get(ctx, "bulwark/identity/pepper")
	if err != nil || again.Data["pepper"] != first {
		t.Fatalf("second setup run replaced the pepper (err %v)", err)
	}
}

func TestVaultSetup_BindsKubernetesRolesToEachServiceAccount(t *testing.T) {
	vs := platformtest.Vault(t)
	runSetup(t, vs, "prod")
	sas := map[string]bool{}
	for _, sa := range render(t, "prod").ServiceAccounts {
		sas[sa.Name] = true
	}
	for svc := range wantCaps {
		r, err := vs.Client.Logical().Read("auth/kubernetes/role/bulwark-" + svc)
		if err != nil || r == nil {
			t.Fatalf("role bulwark-%s: %v", svc, err)
		}
		names := r.Data["bound_service_account_names"].([]any)
		nss := r.Data["bound_service_account_namespaces"].([]any)
		pols := r.Data["token_policies"].([]any)
		if len(names) != 1 || names[0] != svc || !sas[svc] {
			t.Errorf("bulwark-%s bound to service accounts %v; want only %q, which the manifests create", svc, names, svc)
		}
		if len(nss) != 1 || nss[0] != appNS {
			t.Errorf("bulwark-%s bound to namespaces %v, want [%s]", svc, nss, appNS)
		}
		if len(pols) != 1 || pols[0] != "bulwark-"+svc {
			t.Errorf("bulwark-%s has policies %v", svc, pols)
		}
	}
}

func TestVaultPolicies_ExistForEveryServiceThatLogsIn(t *testing.T) {
	// Every Deployment that sets a VAULT_ADDR has a policy file, and no policy
	// exists for a service that does not log in.
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/vault/policies/*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range files {
		have = append(have, strings.TrimSuffix(filepath.Base(f), ".hcl"))
	}
	var need []string
	for _, d := range render(t, "prod").Deployments {
		for _, e := range ContainerEnv(d) {
			if strings.HasSuffix(e, "_VAULT_ADDR") {
				need = append(need, ServiceName(d))
			}
		}
	}
	slices.Sort(have)
	slices.Sort(need)
	if !slices.Equal(have, need) {
		t.Fatalf("policy files %v, services that log in to Vault %v", have, need)
	}
}
