package redaction_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulwarkhq/bulwark/services/redaction"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

func TestNew_LoadsProfilesFileInWireFormat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "profiles.json")
	body := `{"profiles":[{"name":"support","defaultAction":"ACTION_MASK","actions":{"SECRET":"ACTION_BLOCK"},"minScore":0.5,
	  "customRules":[{"entityType":"PROJECT","terms":["Blue Falcon"],"dataClass":"CONFIDENTIAL.INTERNAL"}]}]}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := redaction.New(redaction.Params{Config: redaction.Config{ProfilesFile: p, HashKey: "0123456789abcdef"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Path != "/bulwark.redaction.v1.RedactionService/" || svc.Handler == nil {
		t.Errorf("path %q", svc.Path)
	}
	res, err := svc.Engine.Redact(engine.RedactRequest{ProfileName: "support", Segments: []engine.Segment{{Text: "blue falcon for bob@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Segments[0].Text; got != "[PROJECT] for [EMAIL_ADDRESS]" {
		t.Errorf("got %q", got)
	}
}

func TestNew_RejectsBadConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, cfg := range map[string]redaction.Config{
		"short hash key":  {HashKey: "short"},
		"missing profile": {ProfilesFile: "/does/not/exist.json"},
	} {
		if _, err := redaction.New(redaction.Params{Config: cfg, Logger: log}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
