package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

// Compiled is a validated document ready to evaluate. It is immutable and safe
// for concurrent use.
type Compiled struct {
	hash        string
	defaults    settings
	mfaRoles    []string
	mfaActions  []string
	dataClasses []dataClass
	rules       []rule
	needsCEL    bool
	// providers are the names in the document's providers section.
	providers map[string]bool
}

type settings struct {
	redactionProfile string
	failureMode      identityv1.FailureMode
	retention        identityv1.PayloadRetention
	strictAudit      bool
	limits           []*ratelimitv1.LimitSpec
}

type dataClass struct {
	pattern   string
	deny      bool
	providers map[string]bool
}

type rule struct {
	name       string
	deny       bool
	roles      []string
	principals []string
	actions    []string
	models     []string
	providers  []string
	prompts    []string
	when       cel.Program
	settings   settings
}

// Hash is "sha256:<hex>" of the source document.
func (c *Compiled) Hash() string { return c.hash }

var (
	ruleEnv     *cel.Env
	providerEnv *cel.Env
)

func init() {
	var err error
	ruleEnv, err = cel.NewEnv(
		cel.Variable("principal", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("action", cel.StringType),
		cel.Variable("resource", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("mfa", cel.BoolType),
	)
	if err != nil {
		panic(fmt.Sprintf("policy: building the CEL rule environment: %v", err))
	}
	providerEnv, err = cel.NewEnv(cel.Variable("provider", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(fmt.Sprintf("policy: building the CEL provider environment: %v", err))
	}
}

// costLimit bounds the work one condition may do, so a hostile document cannot
// stall decisions.
const costLimit = 10_000

func compileCEL(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%s", sanitize(iss.Err().Error()))
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("condition must be a boolean, it is %s", ast.OutputType())
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(costLimit))
}

// Compile parses and compiles a document. On failure the error wraps ErrInvalid
// and problems lists every problem found.
func Compile(document string) (*Compiled, []string, error) {
	doc, err := Parse(document)
	if err != nil {
		return nil, []string{strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")}, err
	}
	c, problems := compile(doc)
	if len(problems) > 0 {
		return nil, problems, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	c.hash = ContentHash(document)
	return c, nil, nil
}

func compile(doc *Document) (*Compiled, []string) {
	var problems []string
	c := &Compiled{mfaRoles: doc.MFA.Roles, mfaActions: doc.MFA.Actions}

	var p []string
	c.defaults, p = compileSettings("defaults", doc.Defaults.RedactionProfile, doc.Defaults.RateLimitFailureMode,
		doc.Defaults.PayloadRetention, doc.Defaults.StrictAudit, doc.Defaults.Limits)
	problems = append(problems, p...)

	names := sortedKeys(doc.Providers)
	c.providers = make(map[string]bool, len(names))
	for _, name := range names {
		c.providers[name] = true
	}
	for i, dc := range doc.DataClasses {
		where := fmt.Sprintf("data_classes[%d]", i)
		if dc.Class == "" {
			problems = append(problems, where+": class is required")
			continue
		}
		compiled := dataClass{pattern: dc.Class, deny: dc.Deny, providers: map[string]bool{}}
		if dc.Deny && (len(dc.Providers) > 0 || dc.When != "") {
			problems = append(problems, where+": deny cannot be combined with providers or when")
		}
		for _, name := range dc.Providers {
			compiled.providers[name] = true
		}
		if dc.When != "" {
			prg, err := compileCEL(providerEnv, dc.When)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: when: %v", where, err))
				continue
			}
			for _, name := range names {
				facts := doc.Providers[name]
				attrs := facts.Attributes
				if attrs == nil {
					attrs = map[string]string{}
				}
				out, _, err := prg.Eval(map[string]any{"provider": map[string]any{
					"name": name, "dpa": facts.DPA, "zero_retention": facts.ZeroRetention,
					"region": facts.Region, "attributes": attrs,
				}})
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: when: provider %q: %s", where, name, sanitize(err.Error())))
					continue
				}
				if b, ok := out.Value().(bool); ok && b {
					compiled.providers[name] = true
				}
			}
		}
		if !dc.Deny && len(dc.Providers) == 0 && dc.When == "" {
			problems = append(problems, where+": give providers, when, or deny")
		}
		c.dataClasses = append(c.dataClasses, compiled)
	}

	for i, r := range doc.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			where = fmt.Sprintf("rules[%d] %q", i, r.Name)
		}
		cr := rule{name: r.Name, roles: r.Roles, principals: r.Principals, actions: r.Actions,
			models: r.Models, providers: r.Providers, prompts: r.Prompts}
		if cr.name == "" {
			cr.name = fmt.Sprintf("rules[%d]", i)
		}
		switch r.Effect {
		case "", "allow":
		case "deny":
			cr.deny = true
		default:
			problems = append(problems, where+": effect must be allow or deny")
		}
		if len(cr.actions) == 0 {
			cr.actions = []string{"llm.*"}
		}
		if r.When != "" {
			prg, err := compileCEL(ruleEnv, r.When)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: when: %v", where, err))
			}
			cr.when = prg
			c.needsCEL = true
		}
		cr.settings, p = compileSettings(where, r.RedactionProfile, r.RateLimitFailureMode, r.PayloadRetention, r.StrictAudit, r.Limits)
		problems = append(problems, p...)
		if cr.deny && (len(r.Limits) > 0 || r.RedactionProfile != "" || r.RateLimitFailureMode != "" || r.PayloadRetention != "") {
			problems = append(problems, where+": a deny rule cannot set obligations")
		}
		c.rules = append(c.rules, cr)
	}
	return c, problems
}

func compileSettings(where, profile, mode, retention string, strict bool, limits []Limit) (settings, []string) {
	var problems []string
	s := settings{redactionProfile: profile, strictAudit: strict}
	problems = append(problems, validateMode(where, "rate_limit_failure_mode", mode, "closed", "open")...)
	switch mode {
	case "closed":
		s.failureMode = identityv1.FailureMode_FAILURE_MODE_CLOSED
	case "open":
		s.failureMode = identityv1.FailureMode_FAILURE_MODE_OPEN
	}
	problems = append(problems, validateMode(where, "payload_retention", retention, "hash_only", "redacted")...)
	switch retention {
	case "hash_only":
		s.retention = identityv1.PayloadRetention_PAYLOAD_RETENTION_HASH_ONLY
	case "redacted":
		s.retention = identityv1.PayloadRetention_PAYLOAD_RETENTION_REDACTED
	}
	for _, l := range limits {
		if p := validateLimit(where, l); len(p) > 0 {
			problems = append(problems, p...)
			continue
		}
		s.limits = append(s.limits, limitSpec(l))
	}
	return s, problems
}

var kindValues = map[string]ratelimitv1.LimitKind{
	"requests":    ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS,
	"tokens":      ratelimitv1.LimitKind_LIMIT_KIND_TOKENS,
	"spend":       ratelimitv1.LimitKind_LIMIT_KIND_SPEND,
	"concurrency": ratelimitv1.LimitKind_LIMIT_KIND_CONCURRENCY,
}

var dimensionValues = map[string]ratelimitv1.Dimension{
	"api_key":     ratelimitv1.Dimension_DIMENSION_API_KEY,
	"principal":   ratelimitv1.Dimension_DIMENSION_PRINCIPAL,
	"team":        ratelimitv1.Dimension_DIMENSION_TEAM,
	"model":       ratelimitv1.Dimension_DIMENSION_MODEL,
	"provider":    ratelimitv1.Dimension_DIMENSION_PROVIDER,
	"environment": ratelimitv1.Dimension_DIMENSION_ENVIRONMENT,
}

func limitSpec(l Limit) *ratelimitv1.LimitSpec {
	spec := &ratelimitv1.LimitSpec{Name: l.Name, Kind: kindValues[l.Kind], Limit: l.Limit, Burst: l.Burst, CalendarPeriod: l.CalendarPeriod}
	for _, d := range l.Dimensions {
		spec.Dimensions = append(spec.Dimensions, dimensionValues[d])
	}
	if l.Period != "" && l.CalendarPeriod == "" {
		if d, err := time.ParseDuration(l.Period); err == nil {
			spec.Period = durationpb.New(d)
		}
	}
	return spec
}

// Match reports whether value matches a pattern in which "*" stands for any run
// of characters (including "." and "/").
func Match(pattern, value string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == value
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(value, parts[0]) {
		return false
	}
	value = value[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(value, part)
		if i < 0 {
			return false
		}
		value = value[i+len(part):]
	}
	return strings.HasSuffix(value, last)
}

func matchAny(patterns []string, value string) bool {
	for _, p := range patterns {
		if Match(p, value) {
			return true
		}
	}
	return false
}

func concrete(names []string) bool {
	for _, n := range names {
		if strings.Contains(n, "*") {
			return false
		}
	}
	return true
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k, ok := range m {
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
