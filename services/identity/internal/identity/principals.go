package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
)

var principalIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

var kindPrefix = map[identityv1.PrincipalKind]string{
	identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON:  "usr_",
	identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE: "svc_",
	identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM:    "team_",
}

func principalKey(id string) string { return "principal." + id }

// GetPrincipal reads a principal through the cache.
func (s *Service) GetPrincipal(ctx context.Context, id string) (*identityv1.Principal, error) {
	if !principalIDPattern.MatchString(id) {
		return nil, fmt.Errorf("principal id: %w", ErrNotFound)
	}
	if p, _, ok := s.principals.get(id); ok {
		return p, nil
	}
	_, ver, _ := s.principals.get("")
	p, _, err := load(ctx, s.store, principalKey(id), &identityv1.Principal{})
	if err != nil {
		return nil, notFoundAs(err, "principal")
	}
	s.principals.put(ver, id, p)
	return p, nil
}

// CreatePrincipal stores a new principal.
func (s *Service) CreatePrincipal(ctx context.Context, actor Actor, in *identityv1.Principal) (*identityv1.Principal, error) {
	if in == nil {
		return nil, fmt.Errorf("principal is required: %w", ErrInvalid)
	}
	p := proto.CloneOf(in)
	prefix, ok := kindPrefix[p.Kind]
	if !ok {
		return nil, fmt.Errorf("principal kind is required: %w", ErrInvalid)
	}
	if p.Id == "" {
		p.Id = prefix + newID()
	}
	if !principalIDPattern.MatchString(p.Id) {
		return nil, fmt.Errorf("principal id must match %s: %w", principalIDPattern, ErrInvalid)
	}
	p.Disabled = false
	if err := s.validatePrincipal(ctx, p); err != nil {
		return nil, err
	}
	now := timestamppb.New(s.now())
	p.CreateTime, p.UpdateTime = now, now
	if p.OidcSubject != "" {
		if err := s.claimOIDCSubject(ctx, p.OidcSubject, p.Id); err != nil {
			return nil, err
		}
	}
	if _, err := s.store.Create(ctx, principalKey(p.Id), encode(p)); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, fmt.Errorf("principal %q: %w", p.Id, ErrExists)
		}
		return nil, fmt.Errorf("store principal: %w", err)
	}
	s.principals.reset()
	s.decisions.reset()
	s.audit(ctx, adminAction{actor: actor, action: "identity.principal.create", target: p.Id, after: objectHash(p)})
	s.changed(ctx, "principal", p.Id, "", "")
	return p, nil
}

func (s *Service) validatePrincipal(ctx context.Context, p *identityv1.Principal) error {
	if len(p.DisplayName) > 200 || len(p.Email) > 320 {
		return fmt.Errorf("display_name or email too long: %w", ErrInvalid)
	}
	roles, err := s.allRoles(ctx)
	if err != nil {
		return err
	}
	for _, r := range p.Roles {
		if _, ok := roles[r]; !ok {
			return fmt.Errorf("role %q does not exist: %w", r, ErrInvalid)
		}
	}
	slices.Sort(p.Roles)
	p.Roles = slices.Compact(p.Roles)
	for _, e := range p.Environments {
		if e != "*" && !s.knownEnv(e) {
			return fmt.Errorf("environment %q does not exist: %w", e, ErrInvalid)
		}
	}
	slices.Sort(p.Environments)
	p.Environments = slices.Compact(p.Environments)
	if p.TeamId != "" {
		if p.Kind == identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM {
			return fmt.Errorf("a team cannot belong to a team: %w", ErrInvalid)
		}
		team, err := s.GetPrincipal(ctx, p.TeamId)
		if err != nil || team.Kind != identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM {
			return fmt.Errorf("team %q does not exist: %w", p.TeamId, ErrInvalid)
		}
	}
	if p.OidcSubject != "" && !strings.Contains(p.OidcSubject, "|") {
		return fmt.Errorf("oidc_subject must be \"issuer|sub\": %w", ErrInvalid)
	}
	return nil
}

// ListPrincipals pages through principals in id order.
func (s *Service) ListPrincipals(ctx context.Context, kind identityv1.PrincipalKind, teamID string, pageSize int32, pageToken string) ([]*identityv1.Principal, string, error) {
	size := pageLimit(pageSize, 100, 1000)
	keys, err := s.store.Keys(ctx, "principal")
	if err != nil {
		return nil, "", fmt.Errorf("list principals: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, "principal."))
	}
	sort.Strings(ids)
	var out []*identityv1.Principal
	for _, id := range ids {
		if pageToken != "" && id <= pageToken {
			continue
		}
		p, err := s.GetPrincipal(ctx, id)
		if err != nil {
			continue
		}
		if kind != identityv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED && p.Kind != kind {
			continue
		}
		if teamID != "" && p.TeamId != teamID {
			continue
		}
		if len(out) == size {
			return out, out[len(out)-1].Id, nil
		}
		out = append(out, p)
	}
	return out, "", nil
}

func pageLimit(size int32, def, max int) int {
	switch {
	case size <= 0:
		return def
	case int(size) > max:
		return max
	default:
		return int(size)
	}
}

// UpdatePrincipal changes the fields named in mask.
func (s *Service) UpdatePrincipal(ctx context.Context, actor Actor, in *identityv1.Principal, mask []string) (*identityv1.Principal, error) {
	if in == nil || len(mask) == 0 {
		return nil, fmt.Errorf("principal and update_mask are required: %w", ErrInvalid)
	}
	return s.modifyPrincipal(ctx, actor, in.GetId(), "identity.principal.update", "", func(p *identityv1.Principal) error {
		for _, field := range mask {
			switch field {
			case "display_name":
				p.DisplayName = in.DisplayName
			case "email":
				p.Email = in.Email
			case "team_id":
				p.TeamId = in.TeamId
			case "roles":
				p.Roles = slices.Clone(in.Roles)
			case "environments":
				p.Environments = slices.Clone(in.Environments)
			case "oidc_subject":
				if in.OidcSubject != "" && in.OidcSubject != p.OidcSubject {
					if err := s.claimOIDCSubject(ctx, in.OidcSubject, p.Id); err != nil {
						return err
					}
				}
				p.OidcSubject = in.OidcSubject
			default:
				return fmt.Errorf("field %q cannot be updated: %w", field, ErrInvalid)
			}
		}
		return s.validatePrincipal(ctx, p)
	})
}

// DisablePrincipal stops a principal from authenticating; its keys stop at once
// because every authentication reads the owner.
func (s *Service) DisablePrincipal(ctx context.Context, actor Actor, id, reason string) (*identityv1.Principal, error) {
	return s.modifyPrincipal(ctx, actor, id, "identity.principal.disable", reason, func(p *identityv1.Principal) error {
		p.Disabled = true
		return nil
	})
}

func (s *Service) modifyPrincipal(ctx context.Context, actor Actor, id, action, reason string, mutate func(*identityv1.Principal) error) (*identityv1.Principal, error) {
	if !principalIDPattern.MatchString(id) {
		return nil, fmt.Errorf("principal: %w", ErrNotFound)
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pause(attempt)
		old, rev, err := load(ctx, s.store, principalKey(id), &identityv1.Principal{})
		if err != nil {
			return nil, notFoundAs(err, "principal")
		}
		p := proto.CloneOf(old)
		if err := mutate(p); err != nil {
			return nil, err
		}
		p.UpdateTime = timestamppb.New(s.now())
		if _, err := s.store.Update(ctx, principalKey(id), encode(p), rev); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return nil, fmt.Errorf("store principal: %w", err)
		}
		s.principals.reset()
		s.decisions.reset()
		s.audit(ctx, adminAction{actor: actor, action: action, target: id, before: objectHash(old), after: objectHash(p), reason: reason})
		s.changed(ctx, "principal", id, "", "")
		return p, nil
	}
	return nil, fmt.Errorf("principal %q: %w", id, ErrConflict)
}

// allowedIn reports whether a principal may act in env.
func allowedIn(p *identityv1.Principal, env string) bool {
	return slices.Contains(p.Environments, "*") || slices.Contains(p.Environments, env)
}

// allRoles returns built-in and custom roles by name, through the cache.
func (s *Service) allRoles(ctx context.Context) (map[string]*identityv1.Role, error) {
	if m, _, ok := s.roles.get("all"); ok {
		return m, nil
	}
	_, ver, _ := s.roles.get("")
	m := map[string]*identityv1.Role{}
	for _, r := range authz.BuiltinRoles() {
		m[r.Name] = &identityv1.Role{Name: r.Name, Permissions: r.Permissions, BuiltIn: true, Description: r.Description}
	}
	keys, err := s.store.Keys(ctx, "role")
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	for _, k := range keys {
		r, _, err := load(ctx, s.store, k, &identityv1.Role{})
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, fmt.Errorf("read role: %w", err)
		}
		if !authz.IsBuiltin(r.Name) {
			m[r.Name] = r
		}
	}
	s.roles.put(ver, "all", m)
	return m, nil
}

// Permissions returns the union of the permissions of a principal's roles.
func (s *Service) Permissions(ctx context.Context, p *identityv1.Principal) ([]string, error) {
	roles, err := s.allRoles(ctx)
	if err != nil {
		return nil, err
	}
	var perms []string
	for _, name := range p.Roles {
		if r, ok := roles[name]; ok {
			perms = append(perms, r.Permissions...)
		}
	}
	return perms, nil
}

// ListRoles returns built-in roles first, then custom roles by name.
func (s *Service) ListRoles(ctx context.Context) ([]*identityv1.Role, error) {
	roles, err := s.allRoles(ctx)
	if err != nil {
		return nil, err
	}
	var out, custom []*identityv1.Role
	for _, b := range authz.BuiltinRoles() {
		out = append(out, roles[b.Name])
	}
	for name, r := range roles {
		if !authz.IsBuiltin(name) {
			custom = append(custom, r)
		}
	}
	sort.Slice(custom, func(i, j int) bool { return custom[i].Name < custom[j].Name })
	return append(out, custom...), nil
}

var roleNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
var permissionPattern = regexp.MustCompile(`^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$`)

// PutRole creates or replaces a custom role.
func (s *Service) PutRole(ctx context.Context, actor Actor, in *identityv1.Role) (*identityv1.Role, error) {
	if in == nil || !roleNamePattern.MatchString(in.Name) {
		return nil, fmt.Errorf("role name must match %s: %w", roleNamePattern, ErrInvalid)
	}
	if authz.IsBuiltin(in.Name) {
		return nil, fmt.Errorf("built-in role %q cannot be changed: %w", in.Name, ErrPermissionDenied)
	}
	r := &identityv1.Role{Name: in.Name, Description: in.Description, Permissions: slices.Clone(in.Permissions)}
	for _, p := range r.Permissions {
		if !permissionPattern.MatchString(p) {
			return nil, fmt.Errorf("permission %q is not an action name or pattern: %w", p, ErrInvalid)
		}
	}
	slices.Sort(r.Permissions)
	r.Permissions = slices.Compact(r.Permissions)
	key := "role." + r.Name
	var before string
	for attempt := 0; ; attempt++ {
		old, rev, err := load(ctx, s.store, key, &identityv1.Role{})
		switch {
		case errors.Is(err, ErrNotFound):
			_, err = s.store.Create(ctx, key, encode(r))
			if errors.Is(err, ErrExists) && attempt < maxAttempts {
				pause(attempt + 1)
				continue
			}
		case err != nil:
			return nil, fmt.Errorf("read role: %w", err)
		default:
			before = objectHash(old)
			_, err = s.store.Update(ctx, key, encode(r), rev)
			if errors.Is(err, ErrConflict) && attempt < maxAttempts {
				pause(attempt + 1)
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("store role: %w", err)
		}
		break
	}
	s.roles.reset()
	s.decisions.reset()
	s.audit(ctx, adminAction{actor: actor, action: "identity.role.write", target: r.Name, before: before, after: objectHash(r)})
	s.changed(ctx, "role", r.Name, "", "")
	return r, nil
}
