package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/identity/internal/policy"
)

func changeKey(id string) string { return "change." + id }

// routeKey holds the last approved route content of an alias in an environment.
func routeKey(env, alias string) string {
	return "route." + env + "." + base64.RawURLEncoding.EncodeToString([]byte(alias))
}

const maxChangeText = 2000

// ProposeChange opens a change awaiting approval.
func (s *Service) ProposeChange(ctx context.Context, actor Actor, req *identityv1.ProposeChangeRequest) (*identityv1.Change, error) {
	c, err := s.newChange(ctx, actor, req)
	if err != nil {
		return nil, err
	}
	c.State = identityv1.ChangeState_CHANGE_STATE_PROPOSED
	a := s.step(c, actor, "propose", req.GetDescription(), "")
	if _, err := s.store.Create(ctx, changeKey(c.Id), encode(c)); err != nil {
		return nil, fmt.Errorf("store change: %w", err)
	}
	s.audit(ctx, a)
	return c, nil
}

// newChange validates a proposal and builds the change (not yet stored).
func (s *Service) newChange(ctx context.Context, actor Actor, req *identityv1.ProposeChangeRequest) (*identityv1.Change, error) {
	if req == nil {
		return nil, fmt.Errorf("change is required: %w", ErrInvalid)
	}
	if len(req.Description) > maxChangeText {
		return nil, fmt.Errorf("description too long: %w", ErrInvalid)
	}
	c := &identityv1.Change{
		Id: ulid.Make().String(), Kind: req.Kind, Target: req.Target, Content: req.Content,
		AfterHash: contentHash(req.Content), Description: req.Description, Author: actor.PrincipalID,
	}
	switch req.Kind {
	case identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION:
		if !promptIDPattern.MatchString(req.Target) {
			return nil, fmt.Errorf("prompt id must match %s: %w", promptIDPattern, ErrInvalid)
		}
		if strings.TrimSpace(req.Content) == "" || len(req.Content) > maxPromptBytes {
			return nil, fmt.Errorf("prompt content must be 1 to %d bytes: %w", maxPromptBytes, ErrInvalid)
		}
		c.BeforeHash = s.currentPromptHash(ctx, req.Target)
	case identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION:
		if !s.knownEnv(req.Target) {
			return nil, fmt.Errorf("a policy change targets an environment; %q does not exist: %w", req.Target, ErrInvalid)
		}
		if _, problems, err := policy.Compile(req.Content); err != nil {
			return nil, fmt.Errorf("policy does not compile: %s: %w", strings.Join(problems, "; "), ErrInvalid)
		}
		if ap, err := s.activePolicy(ctx, req.Target); err == nil {
			c.BeforeHash = ap.version.ContentHash
		}
	case identityv1.ChangeKind_CHANGE_KIND_MODEL_ROUTE, identityv1.ChangeKind_CHANGE_KIND_MODEL_UPGRADE:
		var route routerv1.Route
		if err := protojson.Unmarshal([]byte(req.Content), &route); err != nil {
			return nil, fmt.Errorf("route content must be a bulwark.router.v1.Route in JSON: %w", ErrInvalid)
		}
		if req.Target == "" || route.Alias != req.Target {
			return nil, fmt.Errorf("route alias must equal the change target: %w", ErrInvalid)
		}
		if len(route.Deployments) == 0 {
			return nil, fmt.Errorf("route needs at least one deployment: %w", ErrInvalid)
		}
		if prev, _, err := load(ctx, s.store, routeKey(s.prod, req.Target), &identityv1.Change{}); err == nil {
			c.BeforeHash = prev.AfterHash
		}
	default:
		return nil, fmt.Errorf("change kind is required: %w", ErrInvalid)
	}
	now := timestamppb.New(s.now())
	c.CreateTime, c.UpdateTime = now, now
	return c, nil
}

// step appends a history entry and returns the admin action that records it.
func (s *Service) step(c *identityv1.Change, actor Actor, action, comment, env string) adminAction {
	id := eventID()
	now := timestamppb.New(s.now())
	c.History = append(c.History, &identityv1.ChangeStep{Action: action, Actor: actor.PrincipalID, Comment: comment, Time: now, AuditEventId: id})
	c.UpdateTime = now
	details := map[string]string{"kind": kindLabel(c.Kind), "state": strings.ToLower(strings.TrimPrefix(c.State.String(), "CHANGE_STATE_"))}
	if env != "" {
		details["environment"] = env
	}
	return adminAction{eventID: id, actor: actor, action: "change." + strings.SplitN(action, ":", 2)[0], target: c.Id,
		before: c.BeforeHash, after: c.AfterHash, reason: comment, changeID: c.Id, environment: env, details: details}
}

func kindLabel(k identityv1.ChangeKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "CHANGE_KIND_"))
}

// updateChange loads a change, lets mutate validate and alter it, and stores it
// if nobody changed it meanwhile. mutate returns the step to audit.
func (s *Service) updateChange(ctx context.Context, id string, mutate func(*identityv1.Change) (adminAction, error)) (*identityv1.Change, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, fmt.Errorf("change: %w", ErrNotFound)
	}
	old, rev, err := load(ctx, s.store, changeKey(id), &identityv1.Change{})
	if err != nil {
		return nil, notFoundAs(err, "change")
	}
	c := proto.CloneOf(old)
	a, err := mutate(c)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.Update(ctx, changeKey(id), encode(c), rev); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("change %s moved on meanwhile: %w", id, ErrConflict)
		}
		return nil, fmt.Errorf("store change: %w", err)
	}
	s.audit(ctx, a)
	return c, nil
}

// ApproveChange approves a proposed change. The approver must be a person other
// than the author who holds change.approve (the two-person rule).
func (s *Service) ApproveChange(ctx context.Context, actor Actor, id, comment string) (*identityv1.Change, error) {
	approver, err := s.GetPrincipal(ctx, actor.PrincipalID)
	if err != nil {
		return nil, fmt.Errorf("approver: %w", ErrPermissionDenied)
	}
	perms, err := s.Permissions(ctx, approver)
	if err != nil {
		return nil, err
	}
	if approver.Disabled || !authz.Allows(perms, "change.approve") {
		return nil, fmt.Errorf("approver lacks change.approve: %w", ErrPermissionDenied)
	}
	if approver.Kind != identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON {
		return nil, fmt.Errorf("only a person may approve a change: %w", ErrPermissionDenied)
	}
	return s.updateChange(ctx, id, func(c *identityv1.Change) (adminAction, error) {
		if c.State != identityv1.ChangeState_CHANGE_STATE_PROPOSED {
			return adminAction{}, fmt.Errorf("change is %s, not proposed: %w", c.State, ErrFailedPrecondition)
		}
		if c.Author == actor.PrincipalID {
			return adminAction{}, fmt.Errorf("two-person rule: the author cannot approve their own change: %w", ErrFailedPrecondition)
		}
		c.State = identityv1.ChangeState_CHANGE_STATE_APPROVED
		c.Approver = actor.PrincipalID
		return s.step(c, actor, "approve", comment, ""), nil
	})
}

// RejectChange closes a change that has not been applied anywhere.
func (s *Service) RejectChange(ctx context.Context, actor Actor, id, comment string) (*identityv1.Change, error) {
	return s.updateChange(ctx, id, func(c *identityv1.Change) (adminAction, error) {
		if (c.State != identityv1.ChangeState_CHANGE_STATE_PROPOSED && c.State != identityv1.ChangeState_CHANGE_STATE_APPROVED) || len(c.PromotedEnvironments) > 0 {
			return adminAction{}, fmt.Errorf("change is %s or already applied: %w", c.State, ErrFailedPrecondition)
		}
		c.State = identityv1.ChangeState_CHANGE_STATE_REJECTED
		return s.step(c, actor, "reject", comment, ""), nil
	})
}

// AttachEvidence adds evidence to an open change.
func (s *Service) AttachEvidence(ctx context.Context, actor Actor, id string, ev *identityv1.Evidence) (*identityv1.Change, error) {
	if ev == nil || ev.Kind == "" || ev.Reference == "" || len(ev.Kind) > 100 || len(ev.Reference) > maxChangeText {
		return nil, fmt.Errorf("evidence needs a kind and a reference: %w", ErrInvalid)
	}
	return s.updateChange(ctx, id, func(c *identityv1.Change) (adminAction, error) {
		if c.State == identityv1.ChangeState_CHANGE_STATE_REJECTED {
			return adminAction{}, fmt.Errorf("change is rejected: %w", ErrFailedPrecondition)
		}
		c.Evidence = append(c.Evidence, &identityv1.Evidence{Kind: ev.Kind, Reference: ev.Reference, AddedBy: actor.PrincipalID, AddTime: timestamppb.New(s.now())})
		return s.step(c, actor, "evidence", ev.Kind+": "+ev.Reference, ""), nil
	})
}

// PromoteChange applies an approved change to env. Prod needs staging first and evidence.
func (s *Service) PromoteChange(ctx context.Context, actor Actor, id, env string) (*identityv1.Change, error) {
	if !s.knownEnv(env) {
		return nil, fmt.Errorf("environment %q does not exist: %w", env, ErrInvalid)
	}
	p, err := s.GetPrincipal(ctx, actor.PrincipalID)
	if err != nil || p.Disabled || !allowedIn(p, env) {
		return nil, fmt.Errorf("actor may not act in %q: %w", env, ErrPermissionDenied)
	}
	return s.updateChange(ctx, id, func(c *identityv1.Change) (adminAction, error) {
		if c.State != identityv1.ChangeState_CHANGE_STATE_APPROVED {
			return adminAction{}, fmt.Errorf("change is %s; only an approved change can be promoted: %w", c.State, ErrFailedPrecondition)
		}
		if slices.Contains(c.PromotedEnvironments, env) {
			return adminAction{}, fmt.Errorf("change already promoted to %q: %w", env, ErrFailedPrecondition)
		}
		if env == s.prod {
			if !slices.Contains(c.PromotedEnvironments, s.staging) {
				return adminAction{}, fmt.Errorf("promote to %q first: %w", s.staging, ErrFailedPrecondition)
			}
			if len(c.Evidence) == 0 {
				return adminAction{}, fmt.Errorf("attach evidence (e.g. a staging test run) before promoting to %q: %w", s.prod, ErrFailedPrecondition)
			}
		}
		before, err := s.apply(ctx, c, env)
		if err != nil {
			return adminAction{}, err
		}
		c.PromotedEnvironments = append(c.PromotedEnvironments, env)
		if env == s.prod {
			c.State = identityv1.ChangeState_CHANGE_STATE_PROMOTED
		}
		a := s.step(c, actor, "promote:"+env, "", env)
		a.before = before
		return a, nil
	})
}

// BreakGlass applies a change at once, without approval. It is loud: logged at
// ERROR and audited with break_glass set.
func (s *Service) BreakGlass(ctx context.Context, actor Actor, req *identityv1.ProposeChangeRequest, env, justification string) (*identityv1.Change, error) {
	if strings.TrimSpace(justification) == "" || len(justification) > maxChangeText {
		return nil, fmt.Errorf("break-glass needs a justification: %w", ErrInvalid)
	}
	if !s.knownEnv(env) {
		return nil, fmt.Errorf("environment %q does not exist: %w", env, ErrInvalid)
	}
	p, err := s.GetPrincipal(ctx, actor.PrincipalID)
	if err != nil {
		return nil, fmt.Errorf("actor: %w", ErrPermissionDenied)
	}
	perms, err := s.Permissions(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.Disabled || !authz.Allows(perms, "change.break_glass") || !allowedIn(p, env) {
		return nil, fmt.Errorf("actor may not break glass in %q: %w", env, ErrPermissionDenied)
	}
	c, err := s.newChange(ctx, actor, req)
	if err != nil {
		return nil, err
	}
	s.log.ErrorContext(ctx, "BREAK-GLASS change applied without approval",
		"change_id", c.Id, "actor", actor.PrincipalID, "kind", kindLabel(c.Kind), "target", c.Target, "environment", env, "mfa", actor.MFA)
	before, err := s.apply(ctx, c, env)
	if err != nil {
		return nil, err
	}
	c.State = identityv1.ChangeState_CHANGE_STATE_BREAK_GLASS
	c.PromotedEnvironments = []string{env}
	a := s.step(c, actor, "break_glass:"+env, justification, env)
	a.before, a.breakGlass = before, true
	if _, err := s.store.Create(ctx, changeKey(c.Id), encode(c)); err != nil {
		s.log.ErrorContext(ctx, "break-glass change applied but its record not stored", "change_id", c.Id, "err", err)
		s.audit(ctx, a)
		return nil, fmt.Errorf("store change: %w", err)
	}
	s.audit(ctx, a)
	return c, nil
}

// apply makes a change effective in env and returns the hash of what it replaced there.
func (s *Service) apply(ctx context.Context, c *identityv1.Change, env string) (string, error) {
	switch c.Kind {
	case identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION:
		if c.ResultVersion == "" {
			n, err := s.addPromptVersion(ctx, c.Target, c.Content, c.Author, c.Id, c.Description)
			if err != nil {
				return "", err
			}
			c.ResultVersion = fmt.Sprintf("%s@%d", c.Target, n)
		}
		_, n, err := parseRef(c.ResultVersion)
		if err != nil {
			return "", err
		}
		return s.promotePrompt(ctx, c.Target, n, env)
	case identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION:
		pv, before, err := s.applyPolicy(ctx, env, c.Content, c.Author, c.Approver, c.Id)
		if err != nil {
			return "", err
		}
		c.ResultVersion = env + "@" + pv.Version
		return before, nil
	case identityv1.ChangeKind_CHANGE_KIND_MODEL_ROUTE, identityv1.ChangeKind_CHANGE_KIND_MODEL_UPGRADE:
		return s.applyRoute(ctx, c, env)
	}
	return "", fmt.Errorf("change kind: %w", ErrInvalid)
}

// applyRoute records the approved route for env and announces it. The router owns
// routes: it listens for policy_changed events of kind "model_route" or
// "model_upgrade" and reads the content with ChangeService.GetChange(version).
func (s *Service) applyRoute(ctx context.Context, c *identityv1.Change, env string) (string, error) {
	key := routeKey(env, c.Target)
	rec := proto.CloneOf(c)
	rec.History, rec.Evidence = nil, nil
	var before string
	for attempt := 0; ; attempt++ {
		prev, rev, err := load(ctx, s.store, key, &identityv1.Change{})
		switch {
		case errors.Is(err, ErrNotFound):
			_, err = s.store.Create(ctx, key, encode(rec))
		case err != nil:
		default:
			before = prev.AfterHash
			_, err = s.store.Update(ctx, key, encode(rec), rev)
		}
		if (errors.Is(err, ErrExists) || errors.Is(err, ErrConflict)) && attempt < maxAttempts {
			pause(attempt + 1)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("store route: %w", err)
		}
		break
	}
	c.ResultVersion = c.Id
	s.changed(ctx, kindLabel(c.Kind), c.Target, env, c.Id)
	return before, nil
}

// GetChange reads one change.
func (s *Service) GetChange(ctx context.Context, id string) (*identityv1.Change, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, fmt.Errorf("change: %w", ErrNotFound)
	}
	c, _, err := load(ctx, s.store, changeKey(id), &identityv1.Change{})
	if err != nil {
		return nil, notFoundAs(err, "change")
	}
	return c, nil
}

// ListChanges pages through changes, newest first.
func (s *Service) ListChanges(ctx context.Context, state identityv1.ChangeState, kind identityv1.ChangeKind, pageSize int32, pageToken string) ([]*identityv1.Change, string, error) {
	size := pageLimit(pageSize, 100, 1000)
	keys, err := s.store.Keys(ctx, "change")
	if err != nil {
		return nil, "", fmt.Errorf("list changes: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, "change."))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	var out []*identityv1.Change
	for _, id := range ids {
		if pageToken != "" && id >= pageToken {
			continue
		}
		c, err := s.GetChange(ctx, id)
		if err != nil {
			continue
		}
		if (state != identityv1.ChangeState_CHANGE_STATE_UNSPECIFIED && c.State != state) || (kind != identityv1.ChangeKind_CHANGE_KIND_UNSPECIFIED && c.Kind != kind) {
			continue
		}
		if len(out) == size {
			return out, out[len(out)-1].Id, nil
		}
		out = append(out, c)
	}
	return out, "", nil
}
