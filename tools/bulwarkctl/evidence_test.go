package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// readTarGz returns the files of a tar.gz by path.
func readTarGz(t *testing.T, name string) map[string][]byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func TestEvidence_BundleHasEveryFileAnIndexMappingEachControlAndAnAuditBundleThatVerifies(t *testing.T) {
	s := startStack(t)
	seedTraffic(t, s, 3)
	s.ok(t, "provider", "disable", "azure", "--reason", "INC-11")
	platformtest.Until(t, 20*time.Second, "the provider change in the audit log", func() bool {
		return strings.Contains(s.ok(t, "audit", "query", "--json", "--from", "1h"), "azure")
	})

	file := filepath.Join(t.TempDir(), "pack.tar.gz")
	o, e, code := s.ctl(t, s.AdminKey, "", "evidence", "--from", "1d", "--to", "now", "--out", file)
	if code != 0 {
		t.Fatalf("evidence: exit %d\n%s\n%s", code, o, e)
	}
	if !strings.Contains(o, file) {
		t.Fatalf("output does not name the pack: %s", o)
	}
	files := readTarGz(t, file)
	want := []string{"INDEX.md", "index.json",
		"CC6/principals.json", "CC6/roles.json", "CC6/api-keys.csv", "CC6/access-matrix.csv", "CC6/mfa.json",
		"CC3/data-classes.json", "CC3/redaction-profiles.json", "CC3/finding-counts.csv",
		"CC7/audit-evidence.bundle", "CC7/verifier-key.txt", "CC7/alerts.json", "CC7/alert-records.json", "CC7/retention.json",
		"CC8/changes.json", "CC8/policy-versions.json", "CC8/admin-actions.json",
		"CC9/subprocessors.csv", "CC9/subprocessors.json",
		"DATAFLOW/dataflow.svg", "DATAFLOW/dataflow.mmd", "DATAFLOW/dataflow.dot"}
	for _, w := range want {
		if len(files[w]) == 0 {
			t.Errorf("pack lacks %s (or it is empty)", w)
		}
	}
	if len(files) != len(want) {
		t.Errorf("pack has %d files, want %d", len(files), len(want))
	}

	// The index maps every control to files that exist, and lists every file.
	var idx evidenceIndex
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	listed := map[string]bool{"INDEX.md": true, "index.json": true}
	for _, c := range evidenceControls {
		var ec *evidenceControl
		for i := range idx.Controls {
			if idx.Controls[i].ID == c.ID {
				ec = &idx.Controls[i]
			}
		}
		if ec == nil || len(ec.Files) == 0 {
			t.Errorf("index does not map control %s", c.ID)
			continue
		}
		for _, f := range ec.Files {
			if files[f.Path] == nil || f.Answers == "" || !strings.HasPrefix(f.Path, c.ID+"/") {
				t.Errorf("index entry %+v under %s", f, c.ID)
			}
			listed[f.Path] = true
			if !strings.Contains(string(files["INDEX.md"]), "`"+f.Path+"`") {
				t.Errorf("INDEX.md does not list %s", f.Path)
			}
		}
	}
	for name := range files {
		if !listed[name] {
			t.Errorf("%s is in the pack but not in the index", name)
		}
	}

	// The embedded audit bundle verifies against the verifier key the service published.
	key := strings.TrimSpace(string(files["CC7/verifier-key.txt"]))
	sum, err := evidence.VerifyWith(bytes.NewReader(files["CC7/audit-evidence.bundle"]), evidence.Options{TrustedKey: key})
	if err != nil {
		t.Fatalf("embedded audit bundle does not verify: %v", err)
	}
	if sum.Records < 3 || sum.KeyFromBundle {
		t.Fatalf("verification summary: %+v", sum)
	}
	// A tampered copy does not.
	bad := bytes.Clone(files["CC7/audit-evidence.bundle"])
	if i := bytes.Index(bad, []byte("svc_claims_bot")); i >= 0 {
		bad[i] = 'S'
		if _, err := evidence.VerifyWith(bytes.NewReader(bad), evidence.Options{TrustedKey: key}); err == nil {
			t.Fatal("a tampered bundle verified")
		}
	}

	// Content: the application, its key (never its secret), the subprocessors, the findings, the admin action.
	matrix := string(files["CC6/access-matrix.csv"])
	if !strings.Contains(matrix, "svc_claims_bot") || !strings.Contains(matrix, "claims") {
		t.Errorf("access matrix:\n%s", matrix)
	}
	keys := string(files["CC6/api-keys.csv"])
	if !strings.Contains(keys, "svc_claims_bot") || secretRE.MatchString(keys) {
		t.Errorf("api-keys.csv lacks the key or holds a secret:\n%s", keys)
	}
	for _, f := range want {
		if secretRE.Match(files[f]) && f != "CC7/audit-evidence.bundle" {
			t.Errorf("%s holds something shaped like an API key secret", f)
		}
	}
	if subs := string(files["CC9/subprocessors.csv"]); !strings.Contains(subs, "openai") || !strings.Contains(subs, "soc2_report_expiry") {
		t.Errorf("subprocessors.csv:\n%s", subs)
	}
	if fc := strings.Split(strings.TrimSpace(string(files["CC3/finding-counts.csv"])), "\n"); len(fc) < 2 {
		t.Errorf("finding-counts.csv has no finding for the PII call:\n%s", files["CC3/finding-counts.csv"])
	}
	if !strings.Contains(string(files["CC8/admin-actions.json"]), "azure") {
		t.Errorf("admin-actions.json lacks the provider disable")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(files["DATAFLOW/dataflow.svg"]), []byte("<?xml")) && !bytes.Contains(files["DATAFLOW/dataflow.svg"][:200], []byte("<svg")) {
		t.Errorf("dataflow.svg is not SVG")
	}
}

func TestEvidence_RefusesAMissingOrInvertedPeriod(t *testing.T) {
	var o, e bytes.Buffer
	if code := run([]string{"--key", "x", "evidence"}, strings.NewReader(""), &o, &e); code != 2 || !strings.Contains(e.String(), "from") {
		t.Fatalf("without --from: exit %d: %s", code, e.String())
	}
	e.Reset()
	if code := run([]string{"--key", "x", "evidence", "--from", "1d", "--to", "2d"}, strings.NewReader(""), &o, &e); code != 2 || !strings.Contains(e.String(), "after --from") {
		t.Fatalf("inverted period: exit %d: %s", code, e.String())
	}
}
