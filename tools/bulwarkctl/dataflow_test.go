package main

import (
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// seedTraffic creates a team with an application and sends calls through the
// gateway: clean ones and one with PII, so the diagram has volumes and data classes.
func seedTraffic(t *testing.T, s *stack, calls int) {
	t.Helper()
	s.ok(t, "principals", "create", "claims", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_claims_bot", "--role", "app", "--env", "dev", "--team", "claims")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_claims_bot", "--env", "dev"))
	for i := range calls {
		content := "hello"
		if i == 0 {
			content = `Reply to our customer.\nName: Jane Doe\nEmail: jane.doe@example.com\nSSN: 536-90-4399`
		}
		if code := chatContent(t, s.URL, secret, content); code != 200 {
			t.Fatalf("chat: %d", code)
		}
	}
	platformtest.Until(t, 20*time.Second, "the calls' audit records", func() bool {
		return len(s.query(t, "--principal", "svc_claims_bot")) == calls
	})
}

func TestDataflow_DrawsCallersProfilesAndProvidersWithVolumesInAllThreeFormats(t *testing.T) {
	s := startStack(t)
	seedTraffic(t, s, 3)

	dot := s.ok(t, "dataflow", "--format", "dot", "--days", "7")
	for _, want := range []string{
		"digraph bulwark_dataflow", "team: claims", "apps: svc_claims_bot", "redaction profile: default",
		"provider: openai (enabled)", "DPA signed", "SOC 2 report to", "models: ", "3 calls", "3 LLM calls",
		"provider: anthropic", "provider retention", "classes seen: ",
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("dot lacks %q:\n%s", want, dot)
		}
	}
	// Both hops carry the volume: team → profile and profile → the provider that served.
	if n := len(regexp.MustCompile(`-> \S+ \[label="3 calls`).FindAllString(dot, -1)); n != 2 {
		t.Errorf("want 2 edges with 3 calls, got %d:\n%s", n, dot)
	}

	mm := s.ok(t, "dataflow", "--format", "mermaid", "--days", "7")
	for _, want := range []string{"flowchart LR", "subgraph Callers", "subgraph Subprocessors", "team: claims", "-- \"3 calls", "--> p_"} {
		if !strings.Contains(mm, want) {
			t.Errorf("mermaid lacks %q:\n%s", want, mm)
		}
	}

	file := filepath.Join(t.TempDir(), "flow.svg")
	s.ok(t, "dataflow", "--format", "svg", "--out", file)
	svg := readAll(t, file)
	// A real layout: well-formed XML with an <svg> root, a node per box and the labels as text.
	dec := xml.NewDecoder(strings.NewReader(svg))
	var root string
	var texts []string
	nodes := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "g" {
				for _, a := range se.Attr {
					if a.Name.Local == "class" && a.Value == "node" {
						nodes++
					}
				}
			}
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, " ")
	if root != "svg" || nodes < 5 {
		t.Fatalf("svg root %q with %d nodes", root, nodes)
	}
	for _, want := range []string{"team: claims", "redaction profile: default", "provider: openai (enabled)", "3 calls"} {
		if !strings.Contains(all, want) {
			t.Errorf("svg text lacks %q", want)
		}
	}

	if _, e, code := s.ctl(t, s.AdminKey, "", "dataflow", "--format", "png"); code != 2 || !strings.Contains(e, "svg, mermaid or dot") {
		t.Fatalf("unknown format: exit %d: %s", code, e)
	}
}

func TestDataflow_ShowsADisabledProviderAndOnlyCountsTheWindow(t *testing.T) {
	s := startStack(t)
	seedTraffic(t, s, 2)
	s.ok(t, "provider", "disable", "azure", "--reason", "INC-9")
	dot := s.ok(t, "dataflow", "--format", "dot", "--days", "1")
	if !strings.Contains(dot, "provider: azure (DISABLED)") || !strings.Contains(dot, "2 calls") {
		t.Fatalf("dot:\n%s", dot)
	}
	// --days 0 counts nothing: the window ends now and starts now.
	empty := s.ok(t, "dataflow", "--format", "dot", "--days", "0")
	if strings.Contains(empty, "team: claims") || !strings.Contains(empty, "0 LLM calls") {
		t.Fatalf("--days 0:\n%s", empty)
	}
}

func readAll(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// chatContent sends one OpenAI chat completion with the given user content through the gateway.
func chatContent(t *testing.T, url, key, content string) int {
	t.Helper()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + content + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}
