// Package catalog holds the router's providers (connection settings and
// subprocessor facts) and routes (model aliases and their deployments), and
// decides whether a provider may receive a call given its vendor facts and the
// data classes in the call.
package catalog

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrNotFound is returned for an unknown provider or route.
	ErrNotFound = errors.New("not found")
	// ErrInvalid is returned for a provider or route that cannot be stored.
	ErrInvalid = errors.New("invalid")
	// ErrVendorRisk is returned when vendor facts forbid sending a call to a provider.
	ErrVendorRisk = errors.New("vendor risk")
)

// Kind is the API a provider speaks.
type Kind int

// Kinds.
const (
	KindUnspecified Kind = iota
	KindOpenAI           // api.openai.com or any OpenAI-compatible server
	KindAnthropic        // api.anthropic.com
	KindAzureOpenAI      // deployment URLs with api-version
)

// String names the kind as the config file does.
func (k Kind) String() string {
	switch k {
	case KindOpenAI:
		return "openai"
	case KindAnthropic:
		return "anthropic"
	case KindAzureOpenAI:
		return "azure_openai"
	default:
		return "unspecified"
	}
}

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "_")) {
	case "openai", "openai_compatible":
		return KindOpenAI, nil
	case "anthropic":
		return KindAnthropic, nil
	case "azure_openai", "azure":
		return KindAzureOpenAI, nil
	}
	return KindUnspecified, fmt.Errorf("parse kind %q: %w", s, ErrInvalid)
}

// Vendor are a provider's subprocessor facts.
type Vendor struct {
	LegalName            string    `json:"legal_name"`
	SOC2ReportExpiry     time.Time `json:"soc2_report_expiry"`
	DPASigned            bool      `json:"dpa_signed"`
	BAASigned            bool      `json:"baa_signed"`
	ZeroDataRetention    bool      `json:"zero_data_retention"`
	Regions              []string  `json:"regions"`
	IncidentContact      string    `json:"incident_contact"`
	IncidentProcedureURL string    `json:"incident_procedure_url"`
}

// Provider is a configured provider.
type Provider struct {
	Name       string `json:"name"`
	Kind       Kind   `json:"-"`
	BaseURL    string `json:"base_url"`
	APIVersion string `json:"api_version"`
	Enabled    bool   `json:"enabled"`
	Vendor     Vendor `json:"vendor"`
}

// Deployment is one place an alias can be served.
type Deployment struct {
	Name     string   `json:"name"`
	Provider string   `json:"provider"`
	Model    string   `json:"model"`
	Weight   int      `json:"weight"`
	Priority int      `json:"priority"`
	KeyNames []string `json:"key_names"`
}

// Route maps an alias to deployments.
type Route struct {
	Alias            string        `json:"alias"`
	Deployments      []Deployment  `json:"deployments"`
	MaxAttempts      int           `json:"max_attempts"`
	FirstByteTimeout time.Duration `json:"first_byte_timeout"`
	TotalTimeout     time.Duration `json:"total_timeout"`
}

// Route defaults applied when a field is zero.
const (
	DefaultMaxAttempts      = 3
	DefaultFirstByteTimeout = 30 * time.Second
	DefaultTotalTimeout     = 10 * time.Minute
)

// Attempts is MaxAttempts with its default.
func (r Route) Attempts() int {
	if r.MaxAttempts <= 0 {
		return DefaultMaxAttempts
	}
	return r.MaxAttempts
}

// Requirement is what a data class needs from a vendor.
type Requirement struct {
	BAA               bool `json:"baa"`
	DPA               bool `json:"dpa"`
	ZeroDataRetention bool `json:"zero_data_retention"`
}

// DefaultRequirements is the data-class table used when none is configured. A class
// matches itself and its sub-classes ("PII.HEALTH" covers "PII.HEALTH.DIAGNOSIS").
func DefaultRequirements() map[string]Requirement {
	return map[string]Requirement{
		"PII.HEALTH":    {BAA: true},
		"PII.FINANCIAL": {DPA: true, ZeroDataRetention: true},
	}
}

// Validate checks a provider before it is stored.
func (p Provider) Validate() error {
	switch {
	case p.Name == "" || strings.ContainsAny(p.Name, "/ \t\n"):
		return fmt.Errorf("provider name %q: %w", p.Name, ErrInvalid)
	case p.Kind == KindUnspecified:
		return fmt.Errorf("provider %s kind: %w", p.Name, ErrInvalid)
	case p.BaseURL == "":
		return fmt.Errorf("provider %s base_url: %w", p.Name, ErrInvalid)
	case p.Kind == KindAzureOpenAI && p.APIVersion == "":
		return fmt.Errorf("provider %s api_version required for azure_openai: %w", p.Name, ErrInvalid)
	}
	return nil
}

// Validate checks a route before it is stored.
func (r Route) Validate() error {
	if r.Alias == "" {
		return fmt.Errorf("route alias: %w", ErrInvalid)
	}
	if len(r.Deployments) == 0 {
		return fmt.Errorf("route %s has no deployments: %w", r.Alias, ErrInvalid)
	}
	seen := map[string]bool{}
	for _, d := range r.Deployments {
		if d.Name == "" || d.Provider == "" || d.Model == "" {
			return fmt.Errorf("route %s deployment needs name, provider and model: %w", r.Alias, ErrInvalid)
		}
		if seen[d.Name] {
			return fmt.Errorf("route %s deployment %s twice: %w", r.Alias, d.Name, ErrInvalid)
		}
		if d.Weight < 0 {
			return fmt.Errorf("route %s deployment %s weight: %w", r.Alias, d.Name, ErrInvalid)
		}
		seen[d.Name] = true
	}
	if r.MaxAttempts < 0 || r.FirstByteTimeout < 0 || r.TotalTimeout < 0 {
		return fmt.Errorf("route %s limits: %w", r.Alias, ErrInvalid)
	}
	return nil
}

// DaysUntilExpiry is whole days until the SOC 2 report lapses (negative once it has).
func (v Vendor) DaysUntilExpiry(now time.Time) int {
	if v.SOC2ReportExpiry.IsZero() {
		return 0
	}
	d := v.SOC2ReportExpiry.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// Persister saves the catalog after a change; nil keeps changes in memory only.
type Persister interface {
	Save(Snapshot) error
}

// Snapshot is the whole catalog.
type Snapshot struct {
	Providers    []Provider
	Routes       []Route
	Requirements map[string]Requirement
}

// Params configure a Catalog.
type Params struct {
	Snapshot  Snapshot
	Persister Persister
	Now       func() time.Time
}

// Catalog is the in-memory provider and route store. It is safe for concurrent use.
type Catalog struct {
	now     func() time.Time
	persist Persister

	mu        sync.RWMutex
	providers map[string]Provider
	routes    map[string]Route
	reqs      map[string]Requirement
}

// New validates a snapshot and returns a catalog holding it.
func New(p Params) (*Catalog, error) {
	if p.Now == nil {
		p.Now = time.Now
	}
	c := &Catalog{now: p.Now, persist: p.Persister, providers: map[string]Provider{}, routes: map[string]Route{}, reqs: p.Snapshot.Requirements}
	if c.reqs == nil {
		c.reqs = DefaultRequirements()
	}
	for _, pr := range p.Snapshot.Providers {
		if err := pr.Validate(); err != nil {
			return nil, err
		}
		c.providers[pr.Name] = pr
	}
	for _, r := range p.Snapshot.Routes {
		if err := c.validateRoute(r); err != nil {
			return nil, err
		}
		c.routes[r.Alias] = r
	}
	return c, nil
}

func (c *Catalog) validateRoute(r Route) error {
	if err := r.Validate(); err != nil {
		return err
	}
	for _, d := range r.Deployments {
		if _, ok := c.providers[d.Provider]; !ok {
			return fmt.Errorf("route %s deployment %s provider %s: %w", r.Alias, d.Name, d.Provider, ErrNotFound)
		}
	}
	return nil
}

// Provider returns a provider by name.
func (c *Catalog) Provider(name string) (Provider, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.providers[name]
	return p, ok
}

// Route returns a route by alias.
func (c *Catalog) Route(alias string) (Route, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.routes[alias]
	return r, ok
}

// Providers lists providers sorted by name.
func (c *Catalog) Providers() []Provider {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Provider, 0, len(c.providers))
	for _, p := range c.providers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Provider) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Routes lists routes sorted by alias.
func (c *Catalog) Routes() []Route {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Route, 0, len(c.routes))
	for _, r := range c.routes {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Alias, b.Alias) })
	return out
}

// PutProvider creates or replaces a provider and returns the previous one (ok false when new).
func (c *Catalog) PutProvider(p Provider) (prev Provider, existed bool, err error) {
	if err := p.Validate(); err != nil {
		return Provider{}, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, existed = c.providers[p.Name]
	c.providers[p.Name] = p
	if err := c.saveLocked(); err != nil {
		if existed {
			c.providers[p.Name] = prev
		} else {
			delete(c.providers, p.Name)
		}
		return Provider{}, false, err
	}
	return prev, existed, nil
}

// SetProviderEnabled toggles a provider and returns it before and after.
func (c *Catalog) SetProviderEnabled(name string, enabled bool) (before, after Provider, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.providers[name]
	if !ok {
		return Provider{}, Provider{}, fmt.Errorf("provider %s: %w", name, ErrNotFound)
	}
	before = p
	p.Enabled = enabled
	c.providers[name] = p
	if err := c.saveLocked(); err != nil {
		c.providers[name] = before
		return Provider{}, Provider{}, err
	}
	return before, p, nil
}

// PutRoute creates or replaces a route and returns the previous one.
func (c *Catalog) PutRoute(r Route) (prev Route, existed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.validateRoute(r); err != nil {
		return Route{}, false, err
	}
	prev, existed = c.routes[r.Alias]
	c.routes[r.Alias] = r
	if err := c.saveLocked(); err != nil {
		if existed {
			c.routes[r.Alias] = prev
		} else {
			delete(c.routes, r.Alias)
		}
		return Route{}, false, err
	}
	return prev, existed, nil
}

func (c *Catalog) saveLocked() error {
	if c.persist == nil {
		return nil
	}
	s := Snapshot{Requirements: c.reqs}
	for _, p := range c.providers {
		s.Providers = append(s.Providers, p)
	}
	for _, r := range c.routes {
		s.Routes = append(s.Routes, r)
	}
	slices.SortFunc(s.Providers, func(a, b Provider) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Routes, func(a, b Route) int { return strings.Compare(a.Alias, b.Alias) })
	if err := c.persist.Save(s); err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

// CheckVendor returns nil when the provider may receive a call carrying the data
// classes, or an error wrapping ErrVendorRisk whose text says why.
func (c *Catalog) CheckVendor(p Provider, dataClasses []string) error {
	now := c.now()
	if p.Vendor.SOC2ReportExpiry.IsZero() {
		return fmt.Errorf("provider %s has no SOC 2 report on file: %w", p.Name, ErrVendorRisk)
	}
	if !now.Before(p.Vendor.SOC2ReportExpiry) {
		return fmt.Errorf("provider %s SOC 2 report expired on %s: %w", p.Name, p.Vendor.SOC2ReportExpiry.UTC().Format(time.DateOnly), ErrVendorRisk)
	}
	c.mu.RLock()
	reqs := c.reqs
	c.mu.RUnlock()
	for _, dc := range dataClasses {
		for class, need := range reqs {
			if dc != class && !strings.HasPrefix(dc, class+".") {
				continue
			}
			var missing []string
			if need.BAA && !p.Vendor.BAASigned {
				missing = append(missing, "a signed BAA")
			}
			if need.DPA && !p.Vendor.DPASigned {
				missing = append(missing, "a signed DPA")
			}
			if need.ZeroDataRetention && !p.Vendor.ZeroDataRetention {
				missing = append(missing, "a zero-data-retention agreement")
			}
			if len(missing) > 0 {
				return fmt.Errorf("provider %s lacks %s required for %s: %w", p.Name, strings.Join(missing, " and "), dc, ErrVendorRisk)
			}
		}
	}
	return nil
}

// Now is the catalog's clock.
func (c *Catalog) Now() time.Time { return c.now() }
