package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/identity/internal/policy"
)

// activePolicy is an environment's compiled policy and its version.
type activePolicy struct {
	version  *identityv1.PolicyVersion
	compiled *policy.Compiled
}

func policyHeadKey(env string) string { return "policy." + env + ".head" }
func policyVersionKey(env string, n int64) string {
	return "policy." + env + ".v." + strconv.FormatInt(n, 10)
}

// builtinPolicy is the policy of an environment that has none stored.
func (s *Service) builtinPolicy(env string) *identityv1.PolicyVersion {
	doc := policy.ClosedDefault
	if slices.Contains(s.devEnvs, env) {
		doc = policy.DevDefault
	}
	return &identityv1.PolicyVersion{Environment: env, Version: "0", ContentHash: contentHash(doc), Document: doc, Author: "builtin"}
}

func (s *Service) activePolicy(ctx context.Context, env string) (*activePolicy, error) {
	if ap, _, ok := s.policies.get(env); ok {
		return ap, nil
	}
	_, ver, _ := s.policies.get(env)
	pv, _, err := load(ctx, s.store, policyHeadKey(env), &identityv1.PolicyVersion{})
	switch {
	case errors.Is(err, ErrNotFound):
		pv = s.builtinPolicy(env)
	case err != nil:
		return nil, fmt.Errorf("read policy: %w", err)
	}
	c, _, err := policy.Compile(pv.Document)
	if err != nil {
		// Stored policies were compiled before they were stored; a failure here
		// means the store holds something it should not. Fail closed.
		s.log.ErrorContext(ctx, "stored policy does not compile; refusing decisions", "environment", env, "version", pv.Version, "err", err)
		return nil, fmt.Errorf("policy of %q does not compile: %w", env, ErrUnavailable)
	}
	ap := &activePolicy{version: pv, compiled: c}
	s.policies.put(ver, env, ap)
	return ap, nil
}

// Authorize decides whether a principal may perform an action on a resource.
// The returned response is shared with the cache and must not be modified.
func (s *Service) Authorize(ctx context.Context, req *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error) {
	key := decisionKey(req)
	d, ver, ok := s.decisions.get(key)
	if ok {
		return d, nil
	}
	d, err := s.decide(ctx, req)
	if err != nil {
		return nil, err
	}
	s.decisions.put(ver, key, d)
	return d, nil
}

func denied(version string, reasons ...string) *identityv1.AuthorizeResponse {
	return &identityv1.AuthorizeResponse{Allowed: false, Reasons: reasons, PolicyVersion: version}
}

func (s *Service) decide(ctx context.Context, req *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error) {
	res := req.GetResource()
	action := req.GetAction()
	if action == "" {
		return denied("", "no action given"), nil
	}
	p, err := s.GetPrincipal(ctx, req.GetPrincipalId())
	if errors.Is(err, ErrNotFound) {
		return denied("", "unknown principal"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", ErrUnavailable)
	}
	if p.Disabled {
		return denied("", "principal is disabled"), nil
	}
	env := res.GetEnvironment()
	llm := policy.IsLLMAction(action)
	if env == "" && llm {
		return denied("", "an environment is required for "+action), nil
	}
	if env != "" && !s.knownEnv(env) {
		return denied("", fmt.Sprintf("environment %q does not exist", env)), nil
	}
	if env != "" && !allowedIn(p, env) {
		return denied("", fmt.Sprintf("principal may not act in %q", env)), nil
	}
	perms, err := s.Permissions(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", ErrUnavailable)
	}
	if !authz.Allows(perms, action) {
		return denied("", fmt.Sprintf("no role of the principal grants %q", action)), nil
	}
	if len(req.GetApiKeyScopes()) > 0 && !authz.Allows(req.GetApiKeyScopes(), action) {
		return denied("", fmt.Sprintf("the key's scopes do not include %q", action)), nil
	}
	// An admin action that names no environment affects all of them: it is decided
	// under the production policy (its MFA requirements and deny rules).
	policyEnv := env
	if policyEnv == "" {
		policyEnv = s.prod
	}
	ap, err := s.activePolicy(ctx, policyEnv)
	if err != nil {
		return nil, err
	}
	version := ap.version.Version
	in := policy.Input{
		PrincipalID: p.Id, Kind: kindName(p.Kind), TeamID: p.TeamId, Roles: p.Roles, Action: action,
		Model: res.GetModel(), Provider: res.GetProvider(), Environment: policyEnv, Target: res.GetTarget(),
		DataClasses: res.GetDataClasses(), Attributes: res.GetAttributes(), MFA: req.GetMfa(),
	}
	var prompt *identityv1.PromptVersion
	if ref := res.GetPromptRef(); ref != "" {
		prompt, err = s.resolvePrompt(ctx, ref, env)
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
			return denied(version, fmt.Sprintf("prompt %q is not promoted in %q", ref, env)), nil
		case err != nil:
			return nil, fmt.Errorf("authorize: %w", ErrUnavailable)
		}
		in.Prompt = prompt.PromptId
	}
	d := ap.compiled.Evaluate(in)
	out := &identityv1.AuthorizeResponse{Allowed: d.Allowed, Reasons: d.Reasons, PolicyVersion: version, MfaRequired: d.MFARequired}
	if d.Allowed {
		out.Obligations = d.Obligations
		if prompt != nil {
			out.Obligations.SystemPrompt = prompt.Content
			out.Obligations.PromptVersion = fmt.Sprintf("%s@%d", prompt.PromptId, prompt.Version)
		}
	}
	return out, nil
}

func kindName(k identityv1.PrincipalKind) string {
	switch k {
	case identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON:
		return "person"
	case identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE:
		return "service"
	case identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM:
		return "team"
	}
	return ""
}

// decisionKey is the cache key of a request: every field a decision reads.
func decisionKey(req *identityv1.AuthorizeRequest) string {
	res := req.GetResource()
	var b strings.Builder
	b.Grow(128)
	for _, s := range []string{req.GetPrincipalId(), req.GetAction(), res.GetModel(), res.GetProvider(), res.GetPromptRef(), res.GetEnvironment(), res.GetTarget()} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	writeSorted(&b, res.GetDataClasses())
	writeSorted(&b, req.GetApiKeyScopes())
	if attrs := res.GetAttributes(); len(attrs) > 0 {
		keys := make([]string, 0, len(attrs))
		for k := range attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(k)
			b.WriteByte(1)
			b.WriteString(attrs[k])
			b.WriteByte(2)
		}
	}
	b.WriteByte(0)
	if req.GetMfa() {
		b.WriteByte('m')
	}
	return b.String()
}

func writeSorted(b *strings.Builder, values []string) {
	if !slices.IsSorted(values) {
		values = slices.Sorted(slices.Values(values))
	}
	for _, v := range values {
		b.WriteString(v)
		b.WriteByte(1)
	}
	b.WriteByte(0)
}

// GetPolicy returns the active policy of env, or a given version.
func (s *Service) GetPolicy(ctx context.Context, env, version string) (*identityv1.PolicyVersion, error) {
	if !s.knownEnv(env) {
		return nil, fmt.Errorf("environment %q does not exist: %w", env, ErrNotFound)
	}
	if version == "" {
		ap, err := s.activePolicy(ctx, env)
		if err != nil {
			return nil, err
		}
		return ap.version, nil
	}
	if version == "0" {
		return s.builtinPolicy(env), nil
	}
	n, err := strconv.ParseInt(version, 10, 64)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("policy version %q: %w", version, ErrNotFound)
	}
	pv, _, err := load(ctx, s.store, policyVersionKey(env, n), &identityv1.PolicyVersion{})
	if err != nil {
		return nil, notFoundAs(err, "policy version")
	}
	return pv, nil
}

// ListPolicyVersions lists every stored version of env's policy, newest first,
// ending with the built-in version "0".
func (s *Service) ListPolicyVersions(ctx context.Context, env string, includeDocuments bool) ([]*identityv1.PolicyVersion, error) {
	if !s.knownEnv(env) {
		return nil, fmt.Errorf("environment %q does not exist: %w", env, ErrNotFound)
	}
	keys, err := s.store.Keys(ctx, "policy."+env+".v")
	if err != nil {
		return nil, fmt.Errorf("list policy versions: %w", err)
	}
	var out []*identityv1.PolicyVersion
	for _, k := range keys {
		pv, _, err := load(ctx, s.store, k, &identityv1.PolicyVersion{})
		if err != nil {
			continue
		}
		out = append(out, pv)
	}
	out = append(out, s.builtinPolicy(env))
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.ParseInt(out[i].Version, 10, 64)
		b, _ := strconv.ParseInt(out[j].Version, 10, 64)
		return a > b
	})
	if !includeDocuments {
		for i, pv := range out {
			out[i] = &identityv1.PolicyVersion{Environment: pv.Environment, Version: pv.Version, ContentHash: pv.ContentHash,
				Author: pv.Author, Approver: pv.Approver, ChangeId: pv.ChangeId, CreateTime: pv.CreateTime}
		}
	}
	return out, nil
}

// ValidatePolicy compiles a document without storing it.
func (s *Service) ValidatePolicy(document string) (valid bool, problems []string, hash string) {
	_, problems, err := policy.Compile(document)
	return err == nil, problems, contentHash(document)
}

// applyPolicy stores a new version of env's policy and makes it active.
func (s *Service) applyPolicy(ctx context.Context, env, document, author, approver, changeID string) (*identityv1.PolicyVersion, string, error) {
	if _, problems, err := policy.Compile(document); err != nil {
		return nil, "", fmt.Errorf("policy does not compile: %s: %w", strings.Join(problems, "; "), ErrInvalid)
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pause(attempt)
		head, rev, err := load(ctx, s.store, policyHeadKey(env), &identityv1.PolicyVersion{})
		var n int64 = 1
		before := s.builtinPolicy(env).ContentHash
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, "", fmt.Errorf("read policy: %w", err)
		default:
			cur, _ := strconv.ParseInt(head.Version, 10, 64)
			n, before = cur+1, head.ContentHash
		}
		pv := &identityv1.PolicyVersion{
			Environment: env, Version: strconv.FormatInt(n, 10), ContentHash: contentHash(document), Document: document,
			Author: author, Approver: approver, ChangeId: changeID, CreateTime: timestamppb.New(s.now()),
		}
		if _, err := s.store.Create(ctx, policyVersionKey(env, n), encode(pv)); err != nil {
			if errors.Is(err, ErrExists) {
				continue
			}
			return nil, "", fmt.Errorf("store policy version: %w", err)
		}
		if rev == 0 {
			_, err = s.store.Create(ctx, policyHeadKey(env), encode(pv))
		} else {
			_, err = s.store.Update(ctx, policyHeadKey(env), encode(pv), rev)
		}
		if errors.Is(err, ErrExists) || errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("activate policy version: %w", err)
		}
		s.policies.reset()
		s.decisions.reset()
		s.changed(ctx, "policy", env, env, pv.Version)
		return pv, before, nil
	}
	return nil, "", fmt.Errorf("policy of %q: %w", env, ErrConflict)
}
