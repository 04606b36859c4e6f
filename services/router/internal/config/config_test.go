package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
)

const sample = `
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    vendor:
      legal_name: OpenAI OpCo, LLC
      soc2_report_expiry: "2027-06-30T00:00:00Z"
      dpa_signed: true
  - name: azure-eu
    kind: azure_openai
    base_url: https://example.openai.azure.com
    api_version: "2024-10-21"
    enabled: false
    vendor: {legal_name: Microsoft, soc2_report_expiry: "2027-01-01T00:00:00Z", baa_signed: true}
routes:
  - alias: gpt-4o
    max_attempts: 4
    first_byte_timeout: 5s
    deployments:
      - {name: a, provider: openai, model: gpt-4o, weight: 2, key_names: [k1, k2]}
      - {name: b, provider: azure-eu, model: gpt4o-eu, priority: 1}
requirements:
  PII.HEALTH: {baa: true}
  PII.GENETIC: {baa: true, zero_data_retention: true}
`

func TestParse_ReadsYAMLWithDefaultsAndRequirements(t *testing.T) {
	s, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Providers) != 2 || !s.Providers[0].Enabled || s.Providers[1].Enabled || s.Providers[1].Kind != catalog.KindAzureOpenAI {
		t.Fatalf("providers %+v", s.Providers)
	}
	if s.Routes[0].FirstByteTimeout != 5*time.Second || s.Routes[0].MaxAttempts != 4 || s.Routes[0].Deployments[0].KeyNames[1] != "k2" {
		t.Fatalf("route %+v", s.Routes[0])
	}
	if !s.Requirements["PII.GENETIC"].ZeroDataRetention {
		t.Fatalf("requirements %+v", s.Requirements)
	}
	if _, err := catalog.New(catalog.Params{Snapshot: s}); err != nil {
		t.Fatal(err)
	}
}

func TestParse_RejectsUnknownFieldsAndKinds(t *testing.T) {
	for _, bad := range []string{"providers: [{name: x, kind: nope, base_url: u}]", "providerz: []", "routes: [{alias: a, first_byte_timeout: soon}]"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestFilePersister_RoundTripsThroughJSONAndYAML(t *testing.T) {
	s, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"catalog.json", "catalog.yaml"} {
		path := filepath.Join(t.TempDir(), name)
		if err := (FilePersister{Path: path}).Save(s); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(back.Providers) != 2 || back.Providers[1].Enabled || back.Routes[0].FirstByteTimeout != 5*time.Second ||
			!back.Providers[0].Vendor.SOC2ReportExpiry.Equal(s.Providers[0].Vendor.SOC2ReportExpiry) {
			t.Fatalf("%s round trip: %+v", name, back)
		}
		data, _ := os.ReadFile(path)
		if name == "catalog.json" && data[0] != '{' {
			t.Fatalf("json file starts %q", data[:10])
		}
	}
}

func TestDevDefault_IsAValidCatalog(t *testing.T) {
	if _, err := catalog.New(catalog.Params{Snapshot: DevDefault("http://127.0.0.1:8090", time.Now())}); err != nil {
		t.Fatal(err)
	}
}
