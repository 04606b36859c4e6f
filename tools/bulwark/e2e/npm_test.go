package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

var npmOnce sync.Once

// npmDir returns the npm client folder, running `npm ci` once when its
// node_modules is missing (CI runs `npm ci` only in gen/ts).
func npmDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("npm")
	if err != nil {
		t.Fatal(err)
	}
	var ciErr error
	var out []byte
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		out, ciErr = cmd.CombinedOutput()
	})
	if ciErr != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, ciErr, out)
	}
	return dir
}

// runNPM drives the gateway with the npm openai client: streamed and not, and a denied model.
func (tg *target) runNPM(t *testing.T, k keys) {
	dir := npmDir(t)
	mark := tg.Sim.RequestCount()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BULWARK_URL="+tg.URL, "BULWARK_KEY="+k.App, "PROMPT="+piiPrompt)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	var res struct {
		NonStream struct{ RequestID, Answer string } `json:"nonStream"`
		Stream    struct {
			RequestID, Answer   string
			Chunks, TotalTokens int
		} `json:"stream"`
		Denied struct {
			Status     int
			Type, Code string
			RequestID  string `json:"requestId"`
		} `json:"denied"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	tg.record(t.Name()+"/nonStream", res.NonStream.RequestID, auditv1.Decision_DECISION_ALLOWED)
	tg.record(t.Name()+"/stream", res.Stream.RequestID, auditv1.Decision_DECISION_ALLOWED)
	tg.record(t.Name()+"/denied", res.Denied.RequestID, auditv1.Decision_DECISION_DENIED_POLICY)
	restored(t, res.NonStream.Answer)
	restored(t, res.Stream.Answer)
	if res.Stream.Chunks < 3 || res.Stream.TotalTokens == 0 {
		t.Errorf("stream: %d chunks, %d tokens", res.Stream.Chunks, res.Stream.TotalTokens)
	}
	if res.Denied.Status != 403 || res.Denied.Type != "permission_error" || res.Denied.Code != "permission_denied" {
		t.Errorf("denied model: %+v", res.Denied)
	}
	tg.simSawNoPII(t, mark)
}
