package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAudit_HelpListsExportAndVerify(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"audit", "--help"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"export", "verify"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("audit help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestAuditVerify_RejectsAFileThatIsNotABundle(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-a-bundle.tar.gz")
	os.WriteFile(p, []byte("hello"), 0o600)
	var out, errOut bytes.Buffer
	code := run([]string{"audit", "verify", p}, nil, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "INVALID") || !strings.Contains(out.String(), "unreadable") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}
