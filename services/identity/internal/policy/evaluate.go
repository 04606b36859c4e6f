package policy

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// Input is everything a decision depends on besides the document.
type Input struct {
	PrincipalID string
	Kind        string // "person", "service" or "team"
	TeamID      string
	Roles       []string
	Action      string
	Model       string
	Provider    string
	// Prompt is the prompt id (without version) invoked, if any.
	Prompt      string
	Environment string
	Target      string
	DataClasses []string
	Attributes  map[string]string
	MFA         bool
}

// Decision is the document's verdict.
type Decision struct {
	Allowed     bool
	Reasons     []string
	MFARequired bool
	// Obligations are set when Allowed.
	Obligations *identityv1.Obligations
}

// IsLLMAction reports whether an action calls a model; such actions need an
// allow rule, while admin actions are decided by role permissions and can only be
// narrowed (denied, or made to need MFA) by a document.
func IsLLMAction(action string) bool { return strings.HasPrefix(action, "llm.") }

func deny(reasons ...string) Decision { return Decision{Reasons: reasons} }

// Evaluate decides one request.
func (c *Compiled) Evaluate(in Input) Decision {
	if !in.MFA {
		if reason := c.mfaReason(in); reason != "" {
			// mfa_required means a second factor alone would change the verdict.
			with := in
			with.MFA = true
			if d := c.Evaluate(with); !d.Allowed {
				return d
			}
			return Decision{MFARequired: true, Reasons: []string{reason}}
		}
	}

	var activation map[string]any
	cond := func(r *rule) (bool, error) {
		if r.when == nil {
			return true, nil
		}
		if activation == nil {
			activation = in.activation()
		}
		out, _, err := r.when.Eval(activation)
		if err != nil {
			return false, err
		}
		b, _ := out.Value().(bool)
		return b, nil
	}

	llm := IsLLMAction(in.Action)
	var allows []*rule
	// Providers denied by a rule while the request's provider is not yet known.
	var denied map[string]bool
	for i := range c.rules {
		r := &c.rules[i]
		if !r.matches(in, llm) {
			continue
		}
		ok, err := cond(r)
		if r.deny {
			if err != nil {
				return deny(fmt.Sprintf("deny rule %q: condition failed, denying", r.name))
			}
			if !ok {
				continue
			}
			if llm && in.Provider == "" && len(r.providers) > 0 {
				if denied == nil {
					denied = map[string]bool{}
				}
				for name := range c.providers {
					if matchAny(r.providers, name) {
						denied[name] = true
					}
				}
				continue
			}
			return deny(fmt.Sprintf("denied by rule %q", r.name))
		}
		if err == nil && ok {
			allows = append(allows, r)
		}
	}

	if !llm {
		return Decision{Allowed: true, Reasons: []string{fmt.Sprintf("role permits %q", in.Action)}, Obligations: c.obligations(nil)}
	}
	if len(allows) == 0 {
		return deny(fmt.Sprintf("no rule allows %q on model %q for roles %s", in.Action, in.Model, strings.Join(in.Roles, ",")))
	}

	// Providers the rules restrict to (nil: no restriction).
	var allowed map[string]bool
	if in.Provider == "" {
		restricted := true
		union := map[string]bool{}
		for _, r := range allows {
			if len(r.providers) == 0 || !concrete(r.providers) {
				restricted = false
				break
			}
			for _, p := range r.providers {
				union[p] = true
			}
		}
		if restricted {
			allowed = union
		}
	}

	// Data classes narrow the providers further.
	for _, class := range in.DataClasses {
		for _, dc := range c.dataClasses {
			if !Match(dc.pattern, class) {
				continue
			}
			if dc.deny {
				return deny(fmt.Sprintf("data class %q may not be sent to any provider", class))
			}
			if in.Provider != "" {
				if !dc.providers[in.Provider] {
					return deny(fmt.Sprintf("data class %q may not be sent to provider %q", class, in.Provider))
				}
				continue
			}
			if allowed == nil {
				allowed = make(map[string]bool, len(dc.providers))
				for p := range dc.providers {
					allowed[p] = true
				}
				continue
			}
			for p := range allowed {
				if !dc.providers[p] {
					delete(allowed, p)
				}
			}
		}
	}
	if len(denied) > 0 {
		if allowed == nil {
			allowed = make(map[string]bool, len(c.providers))
			for name := range c.providers {
				allowed[name] = true
			}
		}
		for name := range denied {
			delete(allowed, name)
		}
	}
	if allowed != nil && len(allowed) == 0 {
		return deny("no provider may receive the data classes of this request")
	}

	reasons := make([]string, 0, len(allows))
	for _, r := range allows {
		reasons = append(reasons, fmt.Sprintf("allowed by rule %q", r.name))
	}
	ob := c.obligations(allows)
	if allowed != nil {
		ob.AllowedProviders = sortedSet(allowed)
	}
	return Decision{Allowed: true, Reasons: reasons, Obligations: ob}
}

func (c *Compiled) mfaReason(in Input) string {
	for _, role := range in.Roles {
		if matchAny(c.mfaRoles, role) {
			return fmt.Sprintf("role %q requires a second factor", role)
		}
	}
	if matchAny(c.mfaActions, in.Action) {
		return fmt.Sprintf("action %q requires a second factor", in.Action)
	}
	return ""
}

func (r *rule) matches(in Input, llm bool) bool {
	if !matchAny(r.actions, in.Action) {
		return false
	}
	if len(r.roles) > 0 && !slices.ContainsFunc(in.Roles, func(role string) bool { return matchAny(r.roles, role) }) {
		return false
	}
	if len(r.principals) > 0 && !matchAny(r.principals, in.PrincipalID) {
		return false
	}
	if !llm {
		return true
	}
	if len(r.models) > 0 && in.Model != "" && !matchAny(r.models, in.Model) {
		return false
	}
	if len(r.providers) > 0 && in.Provider != "" && !matchAny(r.providers, in.Provider) {
		return false
	}
	// A rule that lists prompts only allows requests that invoke one of them.
	if len(r.prompts) > 0 && !matchAny(r.prompts, in.Prompt) {
		return false
	}
	return true
}

// obligations merges the defaults with the allow rules: the first rule that sets
// a field wins over the defaults; limits add up; strict audit is on if any says so.
func (c *Compiled) obligations(allows []*rule) *identityv1.Obligations {
	ob := &identityv1.Obligations{
		RedactionProfile:     c.defaults.redactionProfile,
		RateLimitFailureMode: c.defaults.failureMode,
		PayloadRetention:     c.defaults.retention,
		StrictAudit:          c.defaults.strictAudit,
	}
	var profileSet, modeSet, retentionSet bool
	for _, l := range c.defaults.limits {
		ob.Limits = append(ob.Limits, proto.CloneOf(l))
	}
	for _, r := range allows {
		s := r.settings
		if s.redactionProfile != "" && !profileSet {
			ob.RedactionProfile, profileSet = s.redactionProfile, true
		}
		if s.failureMode != identityv1.FailureMode_FAILURE_MODE_UNSPECIFIED && !modeSet {
			ob.RateLimitFailureMode, modeSet = s.failureMode, true
		}
		if s.retention != identityv1.PayloadRetention_PAYLOAD_RETENTION_UNSPECIFIED && !retentionSet {
			ob.PayloadRetention, retentionSet = s.retention, true
		}
		ob.StrictAudit = ob.StrictAudit || s.strictAudit
		for _, l := range s.limits {
			ob.Limits = append(ob.Limits, proto.CloneOf(l))
		}
	}
	if ob.RateLimitFailureMode == identityv1.FailureMode_FAILURE_MODE_UNSPECIFIED {
		ob.RateLimitFailureMode = identityv1.FailureMode_FAILURE_MODE_CLOSED
	}
	if ob.PayloadRetention == identityv1.PayloadRetention_PAYLOAD_RETENTION_UNSPECIFIED {
		ob.PayloadRetention = identityv1.PayloadRetention_PAYLOAD_RETENTION_HASH_ONLY
	}
	return ob
}

func (in Input) activation() map[string]any {
	attrs := in.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	classes := in.DataClasses
	if classes == nil {
		classes = []string{}
	}
	roles := in.Roles
	if roles == nil {
		roles = []string{}
	}
	return map[string]any{
		"principal": map[string]any{"id": in.PrincipalID, "kind": in.Kind, "team_id": in.TeamID, "roles": roles},
		"action":    in.Action,
		"resource": map[string]any{
			"model": in.Model, "provider": in.Provider, "prompt": in.Prompt, "environment": in.Environment,
			"target": in.Target, "data_classes": classes, "attributes": attrs,
		},
		"mfa": in.MFA,
	}
}
