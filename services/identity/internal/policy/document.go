// Package policy parses, compiles and evaluates Bulwark policy documents: which
// roles may use which models, providers and prompts, which data classes may go to
// which providers, and what the gateway must apply to an allowed request. It is
// pure: no storage, no transport, no clock.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ErrInvalid is returned for a document that does not parse or compile.
var ErrInvalid = errors.New("invalid policy document")

// Document is a policy as written by people, in YAML or JSON.
type Document struct {
	// Defaults apply to every allowed request unless a matching rule overrides them.
	Defaults Defaults `json:"defaults"`
	// MFA names the roles and actions that require a second factor.
	MFA MFA `json:"mfa"`
	// Providers records the facts that data-class conditions test.
	Providers map[string]ProviderFacts `json:"providers"`
	// DataClasses say which providers may receive which classes of data.
	DataClasses []DataClassRule `json:"data_classes"`
	// Rules allow or deny actions; deny wins over allow.
	Rules []Rule `json:"rules"`
}

// Defaults are the obligations of an allowed request.
type Defaults struct {
	RedactionProfile     string  `json:"redaction_profile"`
	RateLimitFailureMode string  `json:"rate_limit_failure_mode"` // "closed" (default) or "open"
	PayloadRetention     string  `json:"payload_retention"`       // "hash_only" (default) or "redacted"
	StrictAudit          bool    `json:"strict_audit"`
	Limits               []Limit `json:"limits"`
}

// MFA lists what needs a second factor.
type MFA struct {
	Roles   []string `json:"roles"`
	Actions []string `json:"actions"`
}

// ProviderFacts are a provider's subprocessor facts.
type ProviderFacts struct {
	DPA           bool              `json:"dpa"`
	ZeroRetention bool              `json:"zero_retention"`
	Region        string            `json:"region"`
	Attributes    map[string]string `json:"attributes"`
}

// DataClassRule restricts where a class of data may go.
type DataClassRule struct {
	// Class is a data class or a pattern with "*", e.g. "PII.FINANCIAL" or "PII.*".
	Class string `json:"class"`
	// Providers lists providers allowed by name.
	Providers []string `json:"providers"`
	// When is a CEL condition over `provider` (name, dpa, zero_retention, region, attributes);
	// providers of the document for which it is true are allowed too.
	When string `json:"when"`
	// Deny sends the class nowhere.
	Deny bool `json:"deny"`
}

// Rule allows or denies matching requests.
type Rule struct {
	Name   string `json:"name"`
	Effect string `json:"effect"` // "allow" (default) or "deny"
	// Roles, Principals, Actions, Models, Providers, Prompts are patterns with "*";
	// an empty list matches anything, except Actions, which defaults to the LLM actions.
	Roles      []string `json:"roles"`
	Principals []string `json:"principals"`
	Actions    []string `json:"actions"`
	Models     []string `json:"models"`
	Providers  []string `json:"providers"`
	Prompts    []string `json:"prompts"`
	// When is a CEL condition over principal, action, resource and mfa.
	When string `json:"when"`
	// Obligations set by an allow rule.
	Limits               []Limit `json:"limits"`
	RedactionProfile     string  `json:"redaction_profile"`
	RateLimitFailureMode string  `json:"rate_limit_failure_mode"`
	PayloadRetention     string  `json:"payload_retention"`
	StrictAudit          bool    `json:"strict_audit"`
}

// Limit is a ratelimit.v1.LimitSpec in document form.
type Limit struct {
	Name           string   `json:"name"`
	Kind           string   `json:"kind"` // requests, tokens, spend, concurrency
	Dimensions     []string `json:"dimensions"`
	Limit          int64    `json:"limit"`
	Period         string   `json:"period"` // Go duration, e.g. "1m"
	Burst          int64    `json:"burst"`
	CalendarPeriod string   `json:"calendar_period"` // "day" or "month"
}

// ContentHash returns "sha256:<hex>" of content.
func ContentHash(content string) string {
	sum := sha256.Sum256([]byte(content))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Parse reads a YAML or JSON document strictly: unknown fields are errors.
func Parse(document string) (*Document, error) {
	if strings.TrimSpace(document) == "" {
		return nil, fmt.Errorf("%w: empty document", ErrInvalid)
	}
	raw, err := yaml.YAMLToJSON([]byte(document))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, sanitize(err.Error()))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var doc Document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, sanitize(err.Error()))
	}
	return &doc, nil
}

// sanitize keeps parser errors short; they may echo document text, which is
// configuration (never secrets), but is kept to one line.
func sanitize(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

var limitKinds = map[string]bool{"requests": true, "tokens": true, "spend": true, "concurrency": true}

var dimensions = map[string]bool{"api_key": true, "principal": true, "team": true, "model": true, "provider": true, "environment": true}

func validateLimit(where string, l Limit) []string {
	var problems []string
	if l.Name == "" {
		problems = append(problems, where+": limit needs a name")
	}
	if !limitKinds[l.Kind] {
		problems = append(problems, fmt.Sprintf("%s: limit %q: kind must be one of requests, tokens, spend, concurrency", where, l.Name))
	}
	if l.Limit <= 0 {
		problems = append(problems, fmt.Sprintf("%s: limit %q: limit must be positive", where, l.Name))
	}
	for _, d := range l.Dimensions {
		if !dimensions[d] {
			problems = append(problems, fmt.Sprintf("%s: limit %q: unknown dimension %q", where, l.Name, d))
		}
	}
	switch {
	case l.CalendarPeriod != "":
		if l.CalendarPeriod != "day" && l.CalendarPeriod != "month" {
			problems = append(problems, fmt.Sprintf("%s: limit %q: calendar_period must be day or month", where, l.Name))
		}
	case l.Kind == "concurrency":
	default:
		d, err := time.ParseDuration(l.Period)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("%s: limit %q: period must be a positive duration such as 1m", where, l.Name))
		}
	}
	return problems
}

func validateMode(where, field, v string, allowed ...string) []string {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return []string{fmt.Sprintf("%s: %s must be one of %s", where, field, strings.Join(allowed, ", "))}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
