package router_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/tidwall/gjson"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// TestNew_MountsAWorkingRouterWithVaultKeysAndAPersistedCatalog builds the component
// the way the binaries do (real Vault, a catalog file) and calls it over gRPC.
func TestNew_MountsAWorkingRouterWithVaultKeysAndAPersistedCatalog(t *testing.T) {
	v := platformtest.Vault(t)
	ctx := context.Background()
	if _, err := v.Client.KVv2("secret").Put(ctx, "bulwark/dev/providers/openai", map[string]any{"api_key": "sk-from-vault"}); err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Params{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	file := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(file, []byte(`
providers:
  - name: openai
    kind: openai
    base_url: `+ts.URL+`/v1
    vendor: {legal_name: OpenAI, soc2_report_expiry: "2099-01-01T00:00:00Z", dpa_signed: true}
routes:
  - alias: gpt-4o
    deployments: [{name: main, provider: openai, model: gpt-4o}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := router.New(router.Params{Config: router.Config{CatalogFile: file, PersistCatalog: true, KeyMount: "secret", KeyPathPrefix: "bulwark/"},
		Logger: slog.New(slog.DiscardHandler), Vault: v.Client})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	c := routerv1connect.NewRouterServiceClient(platform.HTTPClient(), platformtest.Serve(t, mux), connect.WithGRPC())
	res, err := c.Complete(ctx, connect.NewRequest(&routerv1.CompleteRequest{Call: &routerv1.Call{Environment: "dev",
		Format: routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT, Body: []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"via vault"}]}`)}}))
	if err != nil || gjson.GetBytes(res.Msg.Body, "choices.0.message.content").Str != "via vault" {
		t.Fatalf("%v %+v", err, res)
	}
	if got := s.Requests()[0].Header.Get("Authorization"); got != "Bearer sk-from-vault" {
		t.Fatalf("provider got %q", got)
	}
	if _, err := c.SetProviderEnabled(ctx, connect.NewRequest(&routerv1.SetProviderEnabledRequest{Name: "openai", Enabled: false, Reason: "test"})); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), "enabled: false") {
		t.Fatalf("catalog not persisted: %v\n%s", err, data)
	}
	if strings.Contains(string(data), "sk-from-vault") {
		t.Fatal("key written to the catalog file")
	}
}
