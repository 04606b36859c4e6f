package engine

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Params configures an Engine.
type Params struct {
	// Profiles are added to the built-in ones; a profile with a built-in name replaces it.
	Profiles []Profile
	// HashKey is the master key for the hash action (at least 16 bytes). Per-tenant
	// keys are derived from it. When empty a random key is generated, so hashes are
	// stable only for the life of the process.
	HashKey []byte
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Engine detects and redacts. It is safe for concurrent use.
type Engine struct {
	log      *slog.Logger
	hashKey  []byte
	profiles map[string]*compiled
	names    []string
	tenants  sync.Map // tenant -> derived key
}

// compiled is a profile with its custom rules compiled.
type compiled struct {
	p     Profile
	rules []compiledRule
	// secretActions holds the "SECRET:<rule>" overrides keyed by rule id.
	secretActions map[string]Action
}

type compiledRule struct {
	re     *regexp.Regexp
	r      CustomRule
	ruleID string
}

// New builds an Engine with the built-in profiles plus p.Profiles.
func New(p Params) (*Engine, error) {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := p.HashKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate hash key: %w", err)
		}
		log.Warn("no redaction hash key configured; hash replacements are stable only until restart")
	} else if len(key) < 16 {
		return nil, fmt.Errorf("%w: hash key shorter than 16 bytes", ErrInvalidParams)
	}
	e := &Engine{log: log, hashKey: key, profiles: map[string]*compiled{}}
	for _, prof := range append(BuiltinProfiles(), p.Profiles...) {
		c, err := compileProfile(prof)
		if err != nil {
			return nil, err
		}
		if _, dup := e.profiles[prof.Name]; !dup {
			e.names = append(e.names, prof.Name)
		}
		e.profiles[prof.Name] = c
	}
	return e, nil
}

func compileProfile(p Profile) (*compiled, error) {
	if p.Name == "" {
		return nil, fmt.Errorf("%w: profile without a name", ErrInvalidProfile)
	}
	if p.MinScore < 0 || p.MinScore > 1 || p.BlockInjectionScore < 0 || p.BlockInjectionScore > 1 {
		return nil, fmt.Errorf("%w: scores must be between 0 and 1", ErrInvalidProfile)
	}
	c := &compiled{p: p, secretActions: map[string]Action{}}
	for k, a := range p.Actions {
		if rule, ok := strings.CutPrefix(k, Secret+":"); ok {
			c.secretActions[rule] = a
		}
	}
	for i, r := range p.CustomRules {
		if r.EntityType == "" {
			return nil, fmt.Errorf("%w: custom rule %d has no entity type", ErrInvalidProfile, i)
		}
		expr := r.Pattern
		if expr == "" {
			if len(r.Terms) == 0 {
				return nil, fmt.Errorf("%w: custom rule %d has neither pattern nor terms", ErrInvalidProfile, i)
			}
			q := make([]string, 0, len(r.Terms))
			for _, t := range r.Terms {
				if t = strings.TrimSpace(t); t != "" {
					q = append(q, regexp.QuoteMeta(t))
				}
			}
			sort.Slice(q, func(a, b int) bool { return len(q[a]) > len(q[b]) })
			expr = `(?i)\b(?:` + strings.Join(q, "|") + `)\b`
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%w: custom rule %d pattern does not compile", ErrInvalidProfile, i)
		}
		if r.Score == 0 {
			r.Score = 0.8
		}
		if r.DataClass == "" {
			r.DataClass = "CUSTOM"
		}
		c.rules = append(c.rules, compiledRule{re: re, r: r, ruleID: "custom:" + strings.ToLower(r.EntityType)})
	}
	return c, nil
}

// Profiles returns the configured profiles in the order they were added.
func (e *Engine) Profiles() []Profile {
	out := make([]Profile, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, e.profiles[n].p)
	}
	return out
}

// Profile returns a configured profile by name ("" means "default").
func (e *Engine) Profile(name string) (Profile, error) {
	c, err := e.lookup(name)
	if err != nil {
		return Profile{}, err
	}
	return c.p, nil
}

func (e *Engine) lookup(name string) (*compiled, error) {
	if name == "" {
		name = "default"
	}
	c, ok := e.profiles[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProfile, name)
	}
	return c, nil
}

// resolve picks a named or inline profile.
func (e *Engine) resolve(name string, inline *Profile) (*compiled, error) {
	if inline != nil {
		p := *inline
		if p.Name == "" {
			p.Name = "inline"
		}
		return compileProfile(p)
	}
	return e.lookup(name)
}

// detect returns the findings of one text in original offsets, sorted by start:
// overlaps among PII and secrets are resolved, injection findings are kept apart.
func (e *Engine) detect(text string, c *compiled) (found []Finding, injection float64) {
	nt := normalize(text)
	sc := getScanner(nt.s)
	defer putScanner(sc)
	sc.run()
	for _, r := range c.rules {
		for _, m := range r.re.FindAllStringIndex(nt.s, -1) {
			if m[1] > m[0] {
				sc.out = append(sc.out, cand{start: m[0], end: m[1], typ: r.r.EntityType, rule: r.ruleID, score: r.r.Score, class: r.r.DataClass})
			}
		}
	}
	minScore := c.p.MinScore
	kept := sc.out[:0]
	for _, x := range sc.out {
		if x.score >= minScore && x.end > x.start {
			kept = append(kept, x)
		}
	}
	kept = sc.resolveOverlaps(kept)
	// Hidden characters are an injection signal of their own.
	if nt.tags > 0 {
		sc.inj = append(sc.inj, cand{start: -1, typ: PromptInjection, rule: "unicode-tag-smuggling", score: 0.9})
	} else if nt.bidi > 0 {
		sc.inj = append(sc.inj, cand{start: -1, typ: PromptInjection, rule: "bidi-override", score: 0.7})
	} else if nt.zeroWidth >= 3 {
		sc.inj = append(sc.inj, cand{start: -1, typ: PromptInjection, rule: "zero-width-characters", score: 0.6})
	}
	found = make([]Finding, 0, len(kept)+len(sc.inj))
	for _, x := range kept {
		s, en := nt.origSpan(x.start, x.end)
		class := x.class
		if class == "" {
			class = dataClasses[x.typ]
		}
		found = append(found, Finding{EntityType: x.typ, Start: s, End: en, Rule: x.rule, Score: x.score, DataClass: class})
	}
	miss := 1.0
	for _, x := range sc.inj {
		var s, en int
		if x.start < 0 {
			s, en = nt.firstHidden, nt.firstHiddenEnd
		} else {
			s, en = nt.origSpan(x.start, x.end)
			// A phrase that only matched after invisible characters were removed is deliberate.
			if nt.zeroWidth+nt.tags > 0 && en-s > x.end-x.start && x.score < 0.95 {
				x.score = 0.95
				x.rule = "obfuscated-" + x.rule
			}
		}
		if x.score < minScore {
			continue
		}
		miss *= 1 - x.score
		found = append(found, Finding{EntityType: PromptInjection, Start: s, End: en, Rule: x.rule, Score: x.score, DataClass: dataClasses[PromptInjection]})
	}
	if len(sc.inj) > 0 {
		injection = math.Round((1-miss)*1000) / 1000
	}
	sort.SliceStable(found, func(a, b int) bool { return found[a].Start < found[b].Start })
	return found, injection
}

// resolveOverlaps keeps, among overlapping candidates, secrets first, then the
// higher score, then the longer span. Candidates are grouped into clusters of
// transitively overlapping spans, so the quadratic choice only runs inside
// (small) clusters.
func (sc *scanner) resolveOverlaps(cs []cand) []cand {
	if len(cs) < 2 {
		return cs
	}
	sc.sortByStart(cs)
	out := sc.resolved[:0]
	defer func() { sc.resolved = out[:0] }()
	for i := 0; i < len(cs); {
		j, end := i+1, cs[i].end
		for j < len(cs) && cs[j].start < end {
			end = max(end, cs[j].end)
			j++
		}
		if j == i+1 {
			out = append(out, cs[i])
			i = j
			continue
		}
		cluster := cs[i:j]
		slices.SortFunc(cluster, better)
		first := len(out)
		for _, c := range cluster {
			ok := true
			for _, o := range out[first:] {
				if c.start < o.end && o.start < c.end {
					ok = false
					break
				}
			}
			if ok {
				out = append(out, c)
			}
		}
		slices.SortFunc(out[first:], func(x, y cand) int { return cmp.Compare(x.start, y.start) })
		i = j
	}
	return out
}

// sortByStart sorts candidates by start offset through packed integer keys,
// which is several times cheaper than swapping the structs in a comparison sort.
func (sc *scanner) sortByStart(cs []cand) {
	if slices.IsSortedFunc(cs, func(x, y cand) int { return cmp.Compare(x.start, y.start) }) {
		return
	}
	keys := sc.keys[:0]
	for i, c := range cs {
		keys = append(keys, uint64(c.start)<<24|uint64(i))
	}
	slices.Sort(keys)
	tmp := sc.tmp[:0]
	for _, k := range keys {
		tmp = append(tmp, cs[k&(1<<24-1)])
	}
	copy(cs, tmp)
	sc.keys, sc.tmp = keys[:0], tmp[:0]
}

func better(x, y cand) int {
	if (x.typ == Secret) != (y.typ == Secret) {
		if x.typ == Secret {
			return -1
		}
		return 1
	}
	if x.score != y.score {
		return cmp.Compare(y.score, x.score)
	}
	if x.end-x.start != y.end-y.start {
		return cmp.Compare(y.end-y.start, x.end-x.start)
	}
	return cmp.Compare(x.start, y.start)
}

// Inspect reports the findings of a text under a named profile without changing it.
func (e *Engine) Inspect(text, profile string) (*InspectResult, error) {
	c, err := e.lookup(profile)
	if err != nil {
		return nil, err
	}
	found, inj := e.detect(text, c)
	for i := range found {
		found[i].Action = actionFor(c, &found[i])
	}
	return &InspectResult{Findings: found, DataClasses: classesOf(found), InjectionScore: inj}, nil
}

func classesOf(found []Finding) []string {
	var out []string
	for _, f := range found {
		if f.DataClass != "" && !contains(out, f.DataClass) {
			out = append(out, f.DataClass)
		}
	}
	sort.Strings(out)
	return out
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// actionFor resolves a finding's action: "SECRET:<rule>", then the entity type, then the default.
func actionFor(c *compiled, f *Finding) Action {
	p := &c.p
	if f.EntityType == PromptInjection {
		return ActionAllow
	}
	if f.EntityType == Secret {
		if a, ok := c.secretActions[f.Rule]; ok && a != ActionUnspecified {
			return a
		}
	}
	if a, ok := p.Actions[f.EntityType]; ok && a != ActionUnspecified {
		return a
	}
	if p.DefaultAction == ActionUnspecified {
		return ActionTokenize
	}
	return p.DefaultAction
}

// RedactRequest is the input of Redact.
type RedactRequest struct {
	Segments []Segment
	// ProfileName names a configured profile; ignored when Profile is set.
	ProfileName string
	// Profile is an inline profile.
	Profile *Profile
	// Tenant scopes the hash action.
	Tenant string
}

// Redact detects in every segment and applies the profile's actions. One
// original value gets one placeholder across all segments of the request.
// When anything is blocked the segments are returned unchanged.
func (e *Engine) Redact(req RedactRequest) (*RedactResult, error) {
	c, err := e.resolve(req.ProfileName, req.Profile)
	if err != nil {
		return nil, err
	}
	res := &RedactResult{Segments: make([]Segment, len(req.Segments))}
	var tenantKey []byte
	perSeg := make([][]Finding, len(req.Segments))
	for si, seg := range req.Segments {
		found, inj := e.detect(seg.Text, c)
		res.InjectionScore = math.Max(res.InjectionScore, inj)
		for i := range found {
			f := &found[i]
			f.Segment = seg.ID
			f.Action = actionFor(c, f)
			if f.Action == ActionBlock {
				reason := f.EntityType
				if f.EntityType == Secret {
					reason = Secret + ":" + f.Rule
				}
				if !contains(res.BlockReasons, reason) {
					res.BlockReasons = append(res.BlockReasons, reason)
				}
			}
		}
		perSeg[si] = found
	}
	if c.p.BlockInjectionScore > 0 && res.InjectionScore >= c.p.BlockInjectionScore {
		res.BlockReasons = append(res.BlockReasons, PromptInjection)
	}
	res.Blocked = len(res.BlockReasons) > 0
	sort.Strings(res.BlockReasons)
	n := 0
	for _, found := range perSeg {
		n += len(found)
	}
	tok := tokenizer{byValue: make(map[string]string, n), counters: make(map[string]int, 8), entries: make([]TokenMapEntry, 0, n),
		segments: req.Segments}
	for _, seg := range req.Segments {
		if strings.Contains(seg.Text, phOpen) {
			tok.bracketsInInput = true
			break
		}
	}
	if len(perSeg) > 1 {
		res.Findings = make([]Finding, 0, n)
	}
	for si, seg := range req.Segments {
		found := perSeg[si]
		if res.Blocked {
			res.Segments[si] = seg
			res.Findings = appendFindings(res.Findings, found, len(perSeg))
			continue
		}
		var b strings.Builder
		if len(found) > 0 {
			b.Grow(len(seg.Text) + 16*len(found))
		}
		last := 0
		for i := range found {
			f := &found[i]
			val := seg.Text[f.Start:f.End]
			switch f.Action {
			case ActionMask:
				f.Replacement = "[" + f.EntityType + "]"
			case ActionHash:
				if tenantKey == nil {
					tenantKey = e.tenantKey(req.Tenant)
				}
				f.Replacement = hashReplacement(tenantKey, f.EntityType, normalize(val).s)
			case ActionTokenize:
				f.Replacement = tok.placeholder(f.EntityType, val)
			default:
				continue
			}
			if f.Start < last {
				continue // injection spans may overlap redacted values; they are never rewritten
			}
			b.WriteString(seg.Text[last:f.Start])
			b.WriteString(f.Replacement)
			last = f.End
		}
		if last == 0 && b.Len() == 0 {
			res.Segments[si] = seg
		} else {
			b.WriteString(seg.Text[last:])
			res.Segments[si] = Segment{ID: seg.ID, Text: b.String()}
		}
		res.Findings = appendFindings(res.Findings, found, len(perSeg))
	}
	res.TokenMap = tok.entries
	res.DataClasses = classesOf(res.Findings)
	return res, nil
}

// appendFindings adds one segment's findings; a request of one segment keeps
// that segment's slice instead of copying it.
func appendFindings(all, found []Finding, segments int) []Finding {
	if segments == 1 {
		return found
	}
	return append(all, found...)
}

func (e *Engine) tenantKey(tenant string) []byte {
	if k, ok := e.tenants.Load(tenant); ok {
		return k.([]byte)
	}
	m := hmac.New(sha256.New, e.hashKey)
	m.Write([]byte("bulwark-redaction-tenant\x00"))
	m.Write([]byte(tenant))
	k := m.Sum(nil)
	e.tenants.Store(tenant, k)
	return k
}

func hashReplacement(key []byte, typ, val string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(typ))
	m.Write([]byte{0})
	m.Write([]byte(val))
	return "[" + typ + ":" + hex.EncodeToString(m.Sum(nil)[:8]) + "]"
}

// Placeholder brackets: MATHEMATICAL LEFT/RIGHT ANGLE BRACKET.
const (
	phOpen  = "⟨"
	phClose = "⟩"
)

// tokenizer issues request-scoped placeholders.
type tokenizer struct {
	byValue  map[string]string
	counters map[string]int
	entries  []TokenMapEntry
	segments []Segment
	// bracketsInInput: some segment holds a placeholder bracket, so a new
	// placeholder must be checked against the input (rare; checked once).
	bracketsInInput bool
}

func (t *tokenizer) placeholder(typ, val string) string {
	key := typ + "\x00" + val
	if p, ok := t.byValue[key]; ok {
		return p
	}
	for {
		t.counters[typ]++
		p := phOpen + typ + "_" + strconv.Itoa(t.counters[typ]) + phClose
		// Never issue a placeholder that already occurs in the input, or
		// restoring would rewrite text the user wrote.
		if !t.inInput(p) {
			t.byValue[key] = p
			t.entries = append(t.entries, TokenMapEntry{Placeholder: p, Original: val, EntityType: typ})
			return p
		}
	}
}

func (t *tokenizer) inInput(p string) bool {
	if !t.bracketsInInput {
		return false
	}
	for _, s := range t.segments {
		if strings.Contains(s.Text, p) {
			return true
		}
	}
	return false
}
