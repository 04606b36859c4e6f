package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

var promptIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func promptMetaKey(id string) string { return "prompt." + id + ".meta" }
func promptVersionKey(id string, n int64) string {
	return "prompt." + id + ".v." + strconv.FormatInt(n, 10)
}

// maxPromptBytes bounds a system prompt.
const maxPromptBytes = 256 << 10

// parseRef splits "id@version" (version 0 when absent).
func parseRef(ref string) (string, int64, error) {
	id, v, hasVersion := strings.Cut(ref, "@")
	if !promptIDPattern.MatchString(id) {
		return "", 0, fmt.Errorf("prompt id must match %s: %w", promptIDPattern, ErrInvalid)
	}
	if !hasVersion {
		return id, 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("prompt version must be a positive number: %w", ErrInvalid)
	}
	return id, n, nil
}

func (s *Service) promptMeta(ctx context.Context, id string) (*identityv1.Prompt, uint64, error) {
	m, rev, err := load(ctx, s.store, promptMetaKey(id), &identityv1.Prompt{})
	if err != nil {
		return nil, 0, notFoundAs(err, "prompt")
	}
	return m, rev, nil
}

func (s *Service) promptVersion(ctx context.Context, meta *identityv1.Prompt, n int64) (*identityv1.PromptVersion, error) {
	pv, _, err := load(ctx, s.store, promptVersionKey(meta.Id, n), &identityv1.PromptVersion{})
	if err != nil {
		return nil, notFoundAs(err, "prompt version")
	}
	pv.PromotedEnvironments = nil
	for env, v := range meta.Promoted {
		if v == n {
			pv.PromotedEnvironments = append(pv.PromotedEnvironments, env)
		}
	}
	sort.Strings(pv.PromotedEnvironments)
	return pv, nil
}

// GetPrompt returns "id@version", or the version of "id" promoted to env.
func (s *Service) GetPrompt(ctx context.Context, ref, env string) (*identityv1.PromptVersion, error) {
	id, n, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	meta, _, err := s.promptMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if env == "" {
			return nil, fmt.Errorf("give a version or an environment: %w", ErrInvalid)
		}
		n = meta.Promoted[env]
		if n == 0 {
			return nil, fmt.Errorf("prompt %q has no version promoted to %q: %w", id, env, ErrNotFound)
		}
	}
	return s.promptVersion(ctx, meta, n)
}

// resolvePrompt returns the prompt a request may invoke in env: the promoted
// version, and an explicit version only if it is the one promoted there.
func (s *Service) resolvePrompt(ctx context.Context, ref, env string) (*identityv1.PromptVersion, error) {
	key := env + "\x00" + ref
	pv, ver, ok := s.prompts.get(key)
	if ok {
		return pv, nil
	}
	pv, err := s.resolvePromptUncached(ctx, ref, env)
	if err != nil {
		return nil, err
	}
	s.prompts.put(ver, key, pv)
	return pv, nil
}

func (s *Service) resolvePromptUncached(ctx context.Context, ref, env string) (*identityv1.PromptVersion, error) {
	id, n, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	meta, _, err := s.promptMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	promoted := meta.Promoted[env]
	if promoted == 0 || (n != 0 && n != promoted) {
		return nil, fmt.Errorf("prompt %q: %w", ref, ErrNotFound)
	}
	return s.promptVersion(ctx, meta, promoted)
}

// ListPrompts pages through prompts by id.
func (s *Service) ListPrompts(ctx context.Context, pageSize int32, pageToken string) ([]*identityv1.Prompt, string, error) {
	size := pageLimit(pageSize, 100, 1000)
	keys, err := s.store.Keys(ctx, "prompt")
	if err != nil {
		return nil, "", fmt.Errorf("list prompts: %w", err)
	}
	var ids []string
	for _, k := range keys {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(k, "prompt."), ".meta"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []*identityv1.Prompt
	for _, id := range ids {
		if pageToken != "" && id <= pageToken {
			continue
		}
		meta, _, err := s.promptMeta(ctx, id)
		if err != nil {
			continue
		}
		if len(out) == size {
			return out, out[len(out)-1].Id, nil
		}
		out = append(out, meta)
	}
	return out, "", nil
}

// ListPromptVersions lists every version of a prompt, newest first.
func (s *Service) ListPromptVersions(ctx context.Context, id string) ([]*identityv1.PromptVersion, error) {
	if !promptIDPattern.MatchString(id) {
		return nil, fmt.Errorf("prompt: %w", ErrNotFound)
	}
	meta, _, err := s.promptMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []*identityv1.PromptVersion
	for n := meta.LatestVersion; n >= 1; n-- {
		pv, err := s.promptVersion(ctx, meta, n)
		if err != nil {
			return nil, err
		}
		out = append(out, pv)
	}
	return out, nil
}

// currentPromptHash is the hash of the prompt's latest content, "" if new.
func (s *Service) currentPromptHash(ctx context.Context, id string) string {
	meta, _, err := s.promptMeta(ctx, id)
	if err != nil || meta.LatestVersion == 0 {
		return ""
	}
	pv, err := s.promptVersion(ctx, meta, meta.LatestVersion)
	if err != nil {
		return ""
	}
	return pv.ContentHash
}

// addPromptVersion stores content as the prompt's next version.
func (s *Service) addPromptVersion(ctx context.Context, id, content, author, changeID, description string) (int64, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pause(attempt)
		meta, rev, err := s.promptMeta(ctx, id)
		if errors.Is(err, ErrNotFound) {
			meta, rev = &identityv1.Prompt{Id: id, Description: description, Promoted: map[string]int64{}}, 0
		} else if err != nil {
			return 0, err
		}
		n := meta.LatestVersion + 1
		pv := &identityv1.PromptVersion{PromptId: id, Version: n, Content: content, ContentHash: contentHash(content),
			Author: author, ChangeId: changeID, CreateTime: timestamppb.New(s.now())}
		if _, err := s.store.Create(ctx, promptVersionKey(id, n), encode(pv)); err != nil {
			if errors.Is(err, ErrExists) {
				continue
			}
			return 0, fmt.Errorf("store prompt version: %w", err)
		}
		next := proto.CloneOf(meta)
		next.LatestVersion = n
		if err := s.putPromptMeta(ctx, next, rev); err != nil {
			if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
				continue
			}
			return 0, err
		}
		return n, nil
	}
	return 0, fmt.Errorf("prompt %q: %w", id, ErrConflict)
}

func (s *Service) putPromptMeta(ctx context.Context, meta *identityv1.Prompt, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = s.store.Create(ctx, promptMetaKey(meta.Id), encode(meta))
	} else {
		_, err = s.store.Update(ctx, promptMetaKey(meta.Id), encode(meta), rev)
	}
	if err != nil {
		return fmt.Errorf("store prompt: %w", err)
	}
	s.prompts.reset()
	s.decisions.reset()
	return nil
}

// promotePrompt makes version n the one used in env; it returns the hash of the
// content promoted there before.
func (s *Service) promotePrompt(ctx context.Context, id string, n int64, env string) (string, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		pause(attempt)
		meta, rev, err := s.promptMeta(ctx, id)
		if err != nil {
			return "", err
		}
		var before string
		if old := meta.Promoted[env]; old != 0 {
			if pv, err := s.promptVersion(ctx, meta, old); err == nil {
				before = pv.ContentHash
			}
		}
		next := proto.CloneOf(meta)
		if next.Promoted == nil {
			next.Promoted = map[string]int64{}
		}
		next.Promoted[env] = n
		if err := s.putPromptMeta(ctx, next, rev); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return "", err
		}
		s.changed(ctx, "prompt", id, env, strconv.FormatInt(n, 10))
		return before, nil
	}
	return "", fmt.Errorf("prompt %q: %w", id, ErrConflict)
}
