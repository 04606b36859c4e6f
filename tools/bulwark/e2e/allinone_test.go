package e2e_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/allinone"
)

// startAllInOne runs the all-in-one Bulwark in this process, exactly as the
// binary does, against the real Redis, an embedded NATS and a real Vault dev server.
func startAllInOne(t *testing.T, redisAddr string) (*target, *allinone.Instance) {
	t.Helper()
	if redisAddr != allinone.EmbeddedRedis {
		_, prefix := platformtest.Redis(t)
		t.Setenv("BULWARK_RATELIMIT_KEY_PREFIX", prefix)
	}
	cfg := allinone.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), LogFormat: "text", LogLevel: "warn",
		RedisAddr: redisAddr, ShutdownTimeout: 15 * time.Second, BootstrapAdminKey: platform.Secret(identity.GenerateKey("dev"))}
	if os.Getenv("BULWARK_E2E_DEV_SECRETS") == "1" {
		cfg.VaultBin = "none" // developer shortcut before `make vault`: the dev secret file
	} else {
		vs := platformtest.Vault(t)
		cfg.VaultAddr, cfg.VaultToken = vs.Addr, platform.Secret(vs.Token)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithCancel(context.Background())
	in, err := allinone.Start(ctx, allinone.Params{Config: cfg, Logger: platform.NewLoggerTo(logOut, "text", "warn"), Listener: ln})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("all-in-one did not shut down cleanly: %v", err)
		}
	})
	return &target{URL: in.URL, IdentityURL: in.URL, AuditURL: in.URL, AdminKey: in.AdminKey, Sim: in.Sim, HC: &http.Client{Timeout: 30 * time.Second}}, in
}

// TestAllInOne_OfficialSDKs_RedactRestoreDenyAndAuditEveryCall is the proof of
// the all-in-one mode: streamed and non-streamed calls through the official Go
// SDKs and the npm openai client, PII never reaching the provider and restored
// in the answer, each kind of refusal with its status and error shape, and
// exactly one verifiable audit record per call.
func TestAllInOne_OfficialSDKs_RedactRestoreDenyAndAuditEveryCall(t *testing.T) {
	tg, _ := startAllInOne(t, "127.0.0.1:6379")
	k := tg.setup(t)
	t.Run("Allowed", func(t *testing.T) { tg.runAllowedCalls(t, k) })
	t.Run("Denied", func(t *testing.T) { tg.runDeniedCalls(t, k) })
	t.Run("NPMOpenAI", func(t *testing.T) { tg.runNPM(t, k) })
	t.Run("Audit", tg.checkAudit)
}

// TestAllInOne_EmbeddedRedis_RunsTheLimiterScriptsAndEnforcesBudgets runs the
// all-in-one on its embedded Redis-protocol server (what `make run` uses where
// no Redis answers): the limiter's Lua scripts run there (checked at start),
// calls are served and a spent budget is refused.
func TestAllInOne_EmbeddedRedis_RunsTheLimiterScriptsAndEnforcesBudgets(t *testing.T) {
	tg, in := startAllInOne(t, allinone.EmbeddedRedis)
	if !strings.HasPrefix(in.RedisAddr, "embedded:") {
		t.Fatalf("redis in use: %s", in.RedisAddr)
	}
	k := tg.setup(t)
	t.Run("Allowed", func(t *testing.T) { tg.runAllowedCalls(t, k) })
	t.Run("Denied", func(t *testing.T) { tg.runDeniedCalls(t, k) })
	t.Run("Audit", tg.checkAudit)
}
