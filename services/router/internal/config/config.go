// Package config reads and writes the router's catalog file (providers, routes and
// the data-class requirement table) in YAML or JSON, and supplies the development
// default that points every provider at a local simulator.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
)

// ErrBadFile is returned for a catalog file that cannot be read.
var ErrBadFile = errors.New("bad catalog file")

// File is the catalog file's shape.
type File struct {
	Providers    []ProviderFile                 `json:"providers"`
	Routes       []RouteFile                    `json:"routes"`
	Requirements map[string]catalog.Requirement `json:"requirements,omitempty"`
}

// ProviderFile is one provider in the file.
type ProviderFile struct {
	Name       string         `json:"name"`
	Kind       string         `json:"kind"`
	BaseURL    string         `json:"base_url"`
	APIVersion string         `json:"api_version,omitempty"`
	Enabled    *bool          `json:"enabled,omitempty"`
	Vendor     catalog.Vendor `json:"vendor"`
}

// RouteFile is one route in the file; durations are Go duration strings ("30s").
type RouteFile struct {
	Alias            string               `json:"alias"`
	Deployments      []catalog.Deployment `json:"deployments"`
	MaxAttempts      int                  `json:"max_attempts,omitempty"`
	FirstByteTimeout string               `json:"first_byte_timeout,omitempty"`
	TotalTimeout     string               `json:"total_timeout,omitempty"`
}

// Parse reads YAML or JSON (JSON is YAML) into a snapshot.
func Parse(data []byte) (catalog.Snapshot, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return catalog.Snapshot{}, fmt.Errorf("parse catalog: %v: %w", err, ErrBadFile)
	}
	return f.Snapshot()
}

// Snapshot converts the file into catalog values.
func (f File) Snapshot() (catalog.Snapshot, error) {
	var s catalog.Snapshot
	for _, p := range f.Providers {
		k, err := catalog.ParseKind(p.Kind)
		if err != nil {
			return s, fmt.Errorf("provider %s: %w", p.Name, ErrBadFile)
		}
		enabled := p.Enabled == nil || *p.Enabled
		s.Providers = append(s.Providers, catalog.Provider{Name: p.Name, Kind: k, BaseURL: p.BaseURL, APIVersion: p.APIVersion, Enabled: enabled, Vendor: p.Vendor})
	}
	for _, r := range f.Routes {
		rt := catalog.Route{Alias: r.Alias, Deployments: r.Deployments, MaxAttempts: r.MaxAttempts}
		var err error
		if rt.FirstByteTimeout, err = dur(r.FirstByteTimeout); err != nil {
			return s, fmt.Errorf("route %s first_byte_timeout: %w", r.Alias, ErrBadFile)
		}
		if rt.TotalTimeout, err = dur(r.TotalTimeout); err != nil {
			return s, fmt.Errorf("route %s total_timeout: %w", r.Alias, ErrBadFile)
		}
		s.Routes = append(s.Routes, rt)
	}
	s.Requirements = f.Requirements
	return s, nil
}

func dur(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// FromSnapshot converts catalog values into the file shape.
func FromSnapshot(s catalog.Snapshot) File {
	f := File{Requirements: s.Requirements}
	for _, p := range s.Providers {
		en := p.Enabled
		f.Providers = append(f.Providers, ProviderFile{Name: p.Name, Kind: p.Kind.String(), BaseURL: p.BaseURL, APIVersion: p.APIVersion, Enabled: &en, Vendor: p.Vendor})
	}
	for _, r := range s.Routes {
		rf := RouteFile{Alias: r.Alias, Deployments: r.Deployments, MaxAttempts: r.MaxAttempts}
		if r.FirstByteTimeout > 0 {
			rf.FirstByteTimeout = r.FirstByteTimeout.String()
		}
		if r.TotalTimeout > 0 {
			rf.TotalTimeout = r.TotalTimeout.String()
		}
		f.Routes = append(f.Routes, rf)
	}
	return f
}

// Load reads a catalog file.
func Load(path string) (catalog.Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return catalog.Snapshot{}, fmt.Errorf("read catalog file: %w", err)
	}
	return Parse(data)
}

// FilePersister writes the catalog back to its file after each change, atomically.
type FilePersister struct{ Path string }

// Save writes the snapshot (YAML for .yaml/.yml, JSON otherwise) via a temp file and rename.
func (p FilePersister) Save(s catalog.Snapshot) error {
	f := FromSnapshot(s)
	data, err := yaml.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode catalog: %w", err)
	}
	ext := strings.ToLower(filepath.Ext(p.Path))
	if ext != ".yaml" && ext != ".yml" {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return fmt.Errorf("encode catalog: %w", err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.Path), ".catalog-*")
	if err != nil {
		return fmt.Errorf("write catalog: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write catalog: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write catalog: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write catalog: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return fmt.Errorf("write catalog: %w", err)
	}
	return nil
}

// DevDefault is the catalog used when no file is given: OpenAI, Anthropic and Azure
// OpenAI providers all pointing at a provider simulator at simURL, with aliases for
// each and a fallback route. Vendor facts are placeholders valid for a year from now.
func DevDefault(simURL string, now time.Time) catalog.Snapshot {
	simURL = strings.TrimRight(simURL, "/")
	v := func(name string) catalog.Vendor {
		return catalog.Vendor{LegalName: name + " (simulated)", SOC2ReportExpiry: now.AddDate(1, 0, 0), DPASigned: true,
			Regions: []string{"us"}, IncidentContact: "security@example.invalid", IncidentProcedureURL: "https://example.invalid/incident"}
	}
	return catalog.Snapshot{
		Providers: []catalog.Provider{
			{Name: "openai", Kind: catalog.KindOpenAI, BaseURL: simURL + "/v1", Enabled: true, Vendor: v("OpenAI")},
			{Name: "anthropic", Kind: catalog.KindAnthropic, BaseURL: simURL, Enabled: true, Vendor: v("Anthropic")},
			{Name: "azure", Kind: catalog.KindAzureOpenAI, BaseURL: simURL, APIVersion: "2024-10-21", Enabled: true, Vendor: v("Microsoft")},
		},
		Routes: []catalog.Route{
			{Alias: "gpt-4o", Deployments: []catalog.Deployment{
				{Name: "openai-gpt-4o", Provider: "openai", Model: "gpt-4o", Weight: 3},
				{Name: "azure-gpt-4o", Provider: "azure", Model: "gpt-4o", Weight: 1},
				{Name: "anthropic-fallback", Provider: "anthropic", Model: "claude-sonnet-4-5", Priority: 1},
			}},
			{Alias: "gpt-4o-mini", Deployments: []catalog.Deployment{{Name: "openai-gpt-4o-mini", Provider: "openai", Model: "gpt-4o-mini"}}},
			{Alias: "claude-sonnet-4-5", Deployments: []catalog.Deployment{
				{Name: "anthropic-sonnet", Provider: "anthropic", Model: "claude-sonnet-4-5"},
				{Name: "openai-fallback", Provider: "openai", Model: "gpt-4o", Priority: 1},
			}},
			{Alias: "text-embedding-3-small", Deployments: []catalog.Deployment{{Name: "openai-embed", Provider: "openai", Model: "text-embedding-3-small"}}},
		},
		Requirements: catalog.DefaultRequirements(),
	}
}
