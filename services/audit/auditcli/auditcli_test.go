package auditcli_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/auditcli"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/audittest"
	"github.com/bulwarkhq/bulwark/services/audit/internal/server"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func execute(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := auditcli.Command(auditcli.Params{HTTPClient: platform.HTTPClient()})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestExportThenVerify_ReportsValidThenNamesTheTamperedRecord(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	for i := range 25 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	impl, _ := server.New(server.Params{Log: l})
	mux := http.NewServeMux()
	mux.Handle(auditv1connect.NewAuditServiceHandler(impl))
	url := platformtest.Serve(t, mux)

	dir := t.TempDir()
	bundle := filepath.Join(dir, "evidence.tar.gz")
	out, _, err := execute(t, "export", "--url", url, "--grpc", "-o", bundle)
	if err != nil || !strings.Contains(out, "25 records") {
		t.Fatalf("export: %v %s", err, out)
	}
	out, _, err = execute(t, "verify", bundle, "--key", e.VKey)
	if err != nil || !strings.Contains(out, "VALID") || !strings.Contains(out, "records:      25") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	names, files := audittest.BundleFiles(t, mustRead(t, bundle))
	files["records/000000.jsonl"] = bytes.Replace(files["records/000000.jsonl"], []byte(`"req-17"`), []byte(`"req-1700"`), 1)
	tampered := filepath.Join(dir, "tampered.tar.gz")
	os.WriteFile(tampered, audittest.WriteBundle(t, names, files), 0o600)
	out, _, err = execute(t, "verify", tampered, "--key", e.VKey)
	if err == nil || !strings.Contains(out, "INVALID") || !strings.Contains(out, "record 17: the decoded event differs") {
		t.Fatalf("tampered verify: %v\n%s", err, out)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
