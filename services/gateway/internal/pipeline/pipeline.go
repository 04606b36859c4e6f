package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/llmjson"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

// Actions the gateway asks identity about.
const (
	ActionComplete   = "llm.complete"
	ActionEmbed      = "llm.embed"
	ActionListModels = "llm.models.list"
)

// Hasher computes keyed hashes of payloads for audit records.
type Hasher interface {
	Sum(payload []byte) string
}

// Params configures a Pipeline.
type Params struct {
	Authenticator Authenticator
	Authorizer    Authorizer
	Limiter       Limiter
	Redactor      Redactor
	Router        Router
	Recorder      Recorder
	Hasher        Hasher
	Logger        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheTTL bounds how long principals and decisions are cached (0 disables caching).
	CacheTTL time.Duration
	// CacheSize bounds each cache.
	CacheSize int
	// DefaultMaxTokens is reserved for answers when the request sets no limit.
	DefaultMaxTokens int64
	// ReservationTTL is how long an unsettled reservation holds.
	ReservationTTL time.Duration
	// AuditSync records every event before the answer is completed, as strict_audit does per policy.
	AuditSync bool
	// DefaultEnvironment is used when neither the call nor the credential names one.
	DefaultEnvironment string
	// Metrics records calls and step times; nil means unregistered ones.
	Metrics *Metrics
}

// Pipeline runs governed calls. It is safe for concurrent use.
type Pipeline struct {
	p          Params
	m          *Metrics
	log        *slog.Logger
	now        func() time.Time
	principals *ttlCache[*identityv1.AuthenticateResponse]
	decisions  *ttlCache[*identityv1.AuthorizeResponse]
	bg         sync.WaitGroup
	jobs       chan func()
	closing    chan struct{}
	closeOnce  sync.Once
}

// backgroundWorkers run the work that follows an answer (settle, audit). A
// goroutine that lives on keeps the stack it grew into; a new goroutine per
// call grew its stack on every call (runtime.newstack, ~2 % of the
// all-in-one's CPU at 1,000 calls/s). When all are busy, work gets a goroutine
// of its own rather than waiting.
const backgroundWorkers = 32

// ErrInvalidParams reports a Pipeline configured wrongly.
var ErrInvalidParams = errors.New("invalid pipeline params")

// New validates params and builds a Pipeline.
func New(p Params) (*Pipeline, error) {
	if p.Authenticator == nil || p.Authorizer == nil || p.Limiter == nil || p.Redactor == nil || p.Router == nil || p.Recorder == nil || p.Hasher == nil || p.Logger == nil {
		return nil, fmt.Errorf("%w: every dependency is required", ErrInvalidParams)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.CacheSize <= 0 {
		p.CacheSize = 100_000
	}
	if p.DefaultMaxTokens <= 0 {
		p.DefaultMaxTokens = 1024
	}
	if p.ReservationTTL <= 0 {
		p.ReservationTTL = 10 * time.Minute
	}
	if p.Metrics == nil {
		p.Metrics = NewMetrics(nil)
	}
	pl := &Pipeline{
		p: p, m: p.Metrics, log: p.Logger, now: p.Now,
		principals: newTTLCache[*identityv1.AuthenticateResponse](p.CacheSize, p.CacheTTL, p.Now),
		decisions:  newTTLCache[*identityv1.AuthorizeResponse](p.CacheSize, p.CacheTTL, p.Now),
		jobs:       make(chan func()),
		closing:    make(chan struct{}),
	}
	for range backgroundWorkers {
		go pl.worker()
	}
	return pl, nil
}

func (pl *Pipeline) worker() {
	for {
		select {
		case job := <-pl.jobs:
			job()
		case <-pl.closing:
			return
		}
	}
}

// Invalidate drops cached principals and decisions; called on policy_changed.
func (pl *Pipeline) Invalidate() {
	pl.principals.invalidate()
	pl.decisions.invalidate()
}

// Call is one request arriving at the front door.
type Call struct {
	RequestID string
	// API names the front door for the audit record, e.g. "openai.chat".
	API    string
	Format llmjson.Format
	// Credential is the bearer key or JWT.
	Credential string
	// Environment asked for by the caller; empty means the credential's.
	Environment string
	// PromptRef from the x-bulwark-prompt header (metadata is read from the body).
	PromptRef string
	Body      []byte
	ClientIP  string
	UserAgent string
	TraceID   string
	// Metadata is extra audit context (the Connect API's metadata).
	Metadata map[string]string
}

// Prepared is a call that passed steps 1–4 and may go to a provider.
type Prepared struct {
	Call      *Call
	Request   *llmjson.Request
	Auth      *identityv1.AuthenticateResponse
	Decision  *identityv1.AuthorizeResponse
	Reserve   *ratelimitv1.ReserveResponse
	Redaction *redactionv1.RedactResponse
	TokenMap  *engine.TokenMap
	// Body is the request as it goes to the router.
	Body        []byte
	Environment string
	PromptRef   string
	start       time.Time
	prepared    time.Duration // how long Prepare took
	flags       []string
	finished    bool
}

// Limits returns the limit statuses of the reservation, for rate-limit headers.
func (p *Prepared) Limits() []*ratelimitv1.LimitStatus {
	if p == nil || p.Reserve == nil {
		return nil
	}
	return p.Reserve.GetStatuses()
}

// Redactions counts redacted values by entity type.
func (p *Prepared) Redactions() map[string]int32 {
	out := map[string]int32{}
	for _, f := range p.Redaction.GetFindings() {
		if f.GetAction() != redactionv1.Action_ACTION_ALLOW {
			out[f.GetEntityType()]++
		}
	}
	return out
}

func (pl *Pipeline) strict(p *Prepared) bool {
	return pl.p.AuditSync || p.Decision.GetObligations().GetStrictAudit()
}

func credentialKey(cred, env string) string {
	h := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(h[:16]) + "|" + env
}

func (pl *Pipeline) authenticate(ctx context.Context, cred, env string) (*identityv1.AuthenticateResponse, error) {
	key := credentialKey(cred, env)
	if a, _, ok := pl.principals.get(key); ok {
		return a, nil
	}
	_, gen, _ := pl.principals.get(key)
	a, err := pl.p.Authenticator.Authenticate(ctx, &identityv1.AuthenticateRequest{Credential: cred, Environment: env})
	if err != nil {
		return nil, err
	}
	var exp time.Time
	if a.GetExpireTime() != nil {
		exp = a.GetExpireTime().AsTime()
	}
	pl.principals.put(gen, key, a, exp)
	return a, nil
}

func decisionKey(r *identityv1.AuthorizeRequest) string {
	var b strings.Builder
	res := r.GetResource()
	for _, s := range []string{r.GetPrincipalId(), r.GetAction(), res.GetModel(), res.GetPromptRef(), res.GetEnvironment(), res.GetProvider()} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if r.GetMfa() {
		b.WriteByte('m')
	}
	b.WriteByte(0)
	for _, s := range res.GetDataClasses() {
		b.WriteString(s)
		b.WriteByte(',')
	}
	b.WriteByte(0)
	for _, s := range r.GetApiKeyScopes() {
		b.WriteString(s)
		b.WriteByte(',')
	}
	return b.String()
}

func (pl *Pipeline) authorize(ctx context.Context, req *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error) {
	key := decisionKey(req)
	d, gen, ok := pl.decisions.get(key)
	if ok {
		return d, nil
	}
	d, err := pl.p.Authorizer.Authorize(ctx, req)
	if err != nil {
		return nil, err
	}
	pl.decisions.put(gen, key, d, time.Time{})
	return d, nil
}

// Authenticate resolves a credential (cached) for APIs outside the LLM path.
func (pl *Pipeline) Authenticate(ctx context.Context, cred, env string) (*identityv1.AuthenticateResponse, error) {
	if cred == "" {
		return nil, &Denial{Kind: KindUnauthenticated, Message: "missing credential"}
	}
	a, err := pl.authenticate(ctx, cred, env)
	if err != nil {
		return nil, depDenial("identity", err, KindUnauthenticated)
	}
	return a, nil
}

func (pl *Pipeline) environment(call *Call, a *identityv1.AuthenticateResponse) string {
	switch {
	case a.GetEnvironment() != "":
		return a.GetEnvironment()
	case call.Environment != "":
		return call.Environment
	}
	return pl.p.DefaultEnvironment
}

// Prepare runs authenticate, authorize, reserve and redact. A refusal is a
// *Denial and has already been audited.
func (pl *Pipeline) Prepare(ctx context.Context, call *Call) (*Prepared, error) {
	p := &Prepared{Call: call, start: pl.now(), PromptRef: call.PromptRef}
	deny := func(d *Denial) (*Prepared, error) {
		pl.release(p)
		pl.audit(ctx, p, d.decision(), d.Status(), d.reasons(), nil, nil)
		return nil, d
	}
	if call.Credential == "" {
		return deny(&Denial{Kind: KindUnauthenticated, Message: "missing credential: send Authorization: Bearer <key> or x-api-key"})
	}
	a, err := pl.authenticate(ctx, call.Credential, call.Environment)
	if err != nil {
		return deny(depDenial("identity", err, KindUnauthenticated))
	}
	p.Auth = a
	p.Environment = pl.environment(call, a)
	req, err := llmjson.Parse(call.Format, call.Body)
	if err != nil {
		return deny(&Denial{Kind: KindInvalid, Message: err.Error()})
	}
	p.Request = req
	if p.PromptRef == "" {
		p.PromptRef = req.PromptRef
	}
	action := ActionComplete
	if call.Format == llmjson.OpenAIEmbeddings {
		action = ActionEmbed
	}
	principal := a.GetPrincipal()
	authReq := &identityv1.AuthorizeRequest{
		PrincipalId: principal.GetId(), Action: action, Mfa: a.GetMfa(), ApiKeyScopes: a.GetScopes(),
		Resource: &identityv1.Resource{Model: req.Model, PromptRef: p.PromptRef, Environment: p.Environment},
	}
	d, err := pl.authorize(ctx, authReq)
	if err != nil {
		return deny(depDenial("identity", err, KindForbidden))
	}
	p.Decision = d
	if !d.GetAllowed() {
		return deny(&Denial{Kind: KindForbidden, Message: "request denied by policy", Reasons: d.GetReasons()})
	}
	ob := d.GetObligations()

	// Reserve and redact are independent: run them together.
	var (
		wg       sync.WaitGroup
		res      *ratelimitv1.ReserveResponse
		resErr   error
		red      *redactionv1.RedactResponse
		redErr   error
		segments = req.Segments()
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.Now()
		defer func() { pl.m.reserve.Observe(since(t)) }()
		res, resErr = guarded(ctx, pl, call.RequestID, "ratelimit", pl.p.Limiter.Reserve, &ratelimitv1.ReserveRequest{
			RequestId: call.RequestID,
			Subject: &ratelimitv1.Subject{ApiKeyId: a.GetApiKeyId(), PrincipalId: principal.GetId(), TeamId: principal.GetTeamId(),
				Model: req.Model, Environment: p.Environment},
			Limits:               ob.GetLimits(),
			EstimatedInputTokens: req.EstimatedInputTokens(),
			MaxOutputTokens:      pl.maxTokens(req),
			FailOpen:             ob.GetRateLimitFailureMode() == identityv1.FailureMode_FAILURE_MODE_OPEN,
			Ttl:                  durationpb.New(pl.p.ReservationTTL),
		})
	}()
	if len(segments) > 0 {
		segs := make([]*redactionv1.Segment, len(segments))
		for i, s := range segments {
			segs[i] = &redactionv1.Segment{Id: s.ID, Text: s.Text}
		}
		tenant := principal.GetTeamId()
		if tenant == "" {
			tenant = principal.GetId()
		}
		t := time.Now()
		red, redErr = guarded(ctx, pl, call.RequestID, "redaction", pl.p.Redactor.Redact, &redactionv1.RedactRequest{Segments: segs, ProfileName: ob.GetRedactionProfile(), Tenant: tenant})
		pl.m.redact.Observe(since(t))
	} else {
		red = &redactionv1.RedactResponse{}
	}
	wg.Wait()
	p.Redaction = red
	switch {
	case resErr != nil && ob.GetRateLimitFailureMode() == identityv1.FailureMode_FAILURE_MODE_OPEN && !errors.Is(resErr, ErrRejected):
		p.flags = append(p.flags, "ratelimit_unreachable_fail_open")
		pl.log.WarnContext(ctx, "ratelimit unreachable; failing open per policy", "request_id", call.RequestID)
	case resErr != nil:
		return deny(depDenial("ratelimit", resErr, KindUnavailable))
	default:
		p.Reserve = res
		if res.GetDegraded() {
			p.flags = append(p.flags, "ratelimit_fail_open")
		}
		if !res.GetAllowed() {
			return deny(&Denial{Kind: KindRateLimited, Message: "rate limit exceeded: " + res.GetDeniedBy(),
				RetryAfter: res.GetRetryAfter().AsDuration(), Limits: res.GetStatuses(), Reasons: []string{"limit " + res.GetDeniedBy()}})
		}
	}
	if redErr != nil {
		return deny(depDenial("redaction", redErr, KindUnavailable))
	}
	if red.GetInjectionScore() > 0 {
		p.flags = append(p.flags, "prompt_injection")
	}
	if red.GetBlocked() {
		return deny(&Denial{Kind: KindBlocked, Message: "request blocked: it contains " + strings.Join(red.GetBlockReasons(), ", "),
			Reasons: prefixed("blocked ", red.GetBlockReasons()), redaction: true})
	}
	if classes := red.GetDataClasses(); len(classes) > 0 {
		// The final decision knows the data classes; it is cached like the first.
		again := &identityv1.AuthorizeRequest{
			PrincipalId: authReq.PrincipalId, Action: action, Mfa: authReq.Mfa, ApiKeyScopes: authReq.ApiKeyScopes,
			Resource: &identityv1.Resource{Model: req.Model, PromptRef: p.PromptRef, Environment: p.Environment, DataClasses: classes},
		}
		d2, err := pl.authorize(ctx, again)
		if err != nil {
			return deny(depDenial("identity", err, KindForbidden))
		}
		p.Decision = d2
		if !d2.GetAllowed() {
			return deny(&Denial{Kind: KindForbidden, Message: "request denied by policy for the data it contains", Reasons: d2.GetReasons()})
		}
		ob = d2.GetObligations()
	}
	if ob.GetStrictAudit() && !pl.p.Recorder.Durable() {
		return deny(&Denial{Kind: KindUnavailable, Message: "audit log unavailable and policy requires strict audit", Reasons: []string{"strict_audit: cannot record durably"}})
	}
	p.TokenMap = tokenMap(red.GetTokenMap())
	redacted := make(map[string]string, len(red.GetSegments()))
	for _, s := range red.GetSegments() {
		redacted[s.GetId()] = s.GetText()
	}
	body, err := req.Rewrite(redacted, ob.GetSystemPrompt())
	if err != nil {
		return deny(&Denial{Kind: KindInternal, Message: "internal error"})
	}
	p.Body = body
	if v := ob.GetPromptVersion(); v != "" {
		p.PromptRef = v
	}
	p.prepared = time.Since(p.start)
	pl.m.prepare.Observe(p.prepared.Seconds())
	return p, nil
}

// guarded calls fn, a dependency's method, with a panic in it turned into an
// error for this request (see guard).
func guarded[Req, Res any](ctx context.Context, pl *Pipeline, requestID, dep string, fn func(context.Context, Req) (Res, error), req Req) (res Res, err error) {
	defer pl.guard(ctx, requestID, dep, &err)
	return fn(ctx, req)
}

// guard, deferred, turns a panic in a dependency into an error for this
// request: the all-in-one runs the redaction engine, the rate limiter and the
// router in the gateway's process, where a panic would otherwise end it (or,
// on the handler's goroutine, drop the connection without an answer or an
// audit record). The panic's value may quote the request and is left out;
// the stack is logged.
func (pl *Pipeline) guard(ctx context.Context, requestID, dep string, err *error) {
	if v := recover(); v != nil {
		pl.log.ErrorContext(ctx, dep+" panicked", "request_id", requestID, "stack", string(debug.Stack()))
		*err = fmt.Errorf("%s failed", dep)
	}
}

func (pl *Pipeline) maxTokens(r *llmjson.Request) int64 {
	if r.MaxTokens > 0 {
		return r.MaxTokens
	}
	return pl.p.DefaultMaxTokens
}

func tokenMap(entries []*redactionv1.TokenMapEntry) *engine.TokenMap {
	if len(entries) == 0 {
		return nil
	}
	es := make([]engine.TokenMapEntry, len(entries))
	for i, e := range entries {
		es[i] = engine.TokenMapEntry{Placeholder: e.GetPlaceholder(), Original: e.GetOriginal(), EntityType: e.GetEntityType()}
	}
	return engine.NewTokenMap(es)
}

func prefixed(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

func (pl *Pipeline) routerCall(p *Prepared) *routerv1.Call {
	format := routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT
	if p.Call.Format == llmjson.AnthropicMessages {
		format = routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES
	}
	return &routerv1.Call{RequestId: p.Call.RequestID, Environment: p.Environment, Format: format, Body: p.Body,
		DataClasses: p.Redaction.GetDataClasses(), AllowedProviders: p.Decision.GetObligations().GetAllowedProviders()}
}

// Answer is a whole answer, restored.
type Answer struct {
	Status      int
	Body        []byte
	Provider    string
	ModelServed string
	Usage       *routerv1.Usage
	CostMicros  int64
}

// Complete routes a prepared call, restores the answer, settles and records it.
// A provider's error answer (status >= 400) is returned as an Answer with that
// status, in the provider's (= the request's) format.
func (pl *Pipeline) Complete(ctx context.Context, p *Prepared) (*Answer, error) {
	var ans *Answer
	if p.Call.Format == llmjson.OpenAIEmbeddings {
		t := time.Now()
		r, err := guarded(ctx, pl, p.Call.RequestID, "router", pl.p.Router.Embed, &routerv1.EmbedRequest{RequestId: p.Call.RequestID, Environment: p.Environment, Body: p.Body,
			DataClasses: p.Redaction.GetDataClasses(), AllowedProviders: p.Decision.GetObligations().GetAllowedProviders()})
		pl.m.provider.Observe(since(t))
		pl.m.ownWhole.Observe(p.prepared.Seconds())
		if err != nil {
			return nil, pl.routeFailed(ctx, p, err)
		}
		ans = &Answer{Status: int(r.GetStatus()), Body: r.GetBody(), Provider: r.GetProvider(), ModelServed: r.GetModelServed(), Usage: r.GetUsage()}
	} else {
		t := time.Now()
		r, err := guarded(ctx, pl, p.Call.RequestID, "router", pl.p.Router.Complete, &routerv1.CompleteRequest{Call: pl.routerCall(p)})
		pl.m.provider.Observe(since(t))
		if err != nil {
			return nil, pl.routeFailed(ctx, p, err)
		}
		ans = &Answer{Status: int(r.GetStatus()), Body: r.GetBody(), Provider: r.GetProvider(), ModelServed: r.GetModelServed(), Usage: r.GetUsage()}
		t = time.Now()
		ans.Body, _ = llmjson.RestoreJSON(ans.Body, p.TokenMap)
		restored := time.Since(t)
		pl.m.restore.Observe(restored.Seconds())
		pl.m.ownWhole.Observe((p.prepared + restored).Seconds())
	}
	if ans.Status == 0 {
		ans.Status = 200
	}
	if ans.Status >= 500 && ans.Status != 502 && ans.Status != 503 && ans.Status != 504 {
		ans.Status = 502 // the provider failed; its error body is passed on
	}
	decision := auditv1.Decision_DECISION_ALLOWED
	var reasons []string
	if ans.Status >= 400 {
		decision = auditv1.Decision_DECISION_FAILED_PROVIDER
		reasons = []string{fmt.Sprintf("provider answered %d", ans.Status)}
	}
	cost, err := pl.finish(ctx, p, outcome{status: ans.Status, decision: decision, reasons: reasons, response: ans.Body,
		usage: ans.Usage, provider: ans.Provider, modelServed: ans.ModelServed})
	if err != nil {
		return nil, err
	}
	ans.CostMicros = cost
	return ans, nil
}

// routeFailed releases, audits and classifies a router failure.
func (pl *Pipeline) routeFailed(ctx context.Context, p *Prepared, err error) error {
	d := depDenial("router", err, KindProvider)
	decision := auditv1.Decision_DECISION_FAILED_PROVIDER
	switch d.Kind {
	case KindNotFound:
		d.Message = fmt.Sprintf("model %q does not exist or is not routable", p.Request.Model)
		decision = auditv1.Decision_DECISION_DENIED_POLICY
	case KindForbidden:
		decision = auditv1.Decision_DECISION_DENIED_POLICY
	}
	pl.release(p)
	p.finished = true
	pl.audit(ctx, p, decision, d.Status(), []string{d.Message}, nil, nil)
	return d
}

func (pl *Pipeline) release(p *Prepared) {
	if p == nil || p.Reserve == nil || p.Reserve.GetReservationId() == "" {
		return
	}
	id := p.Reserve.GetReservationId()
	p.Reserve = nil
	pl.background(context.Background(), func(ctx context.Context) {
		if _, err := pl.p.Limiter.Release(ctx, &ratelimitv1.ReleaseRequest{ReservationId: id}); err != nil {
			pl.log.WarnContext(ctx, "release reservation failed; it expires on its own", "err", err.Error())
		}
	})
}

type outcome struct {
	status      int
	decision    auditv1.Decision
	reasons     []string
	response    []byte
	usage       *routerv1.Usage
	provider    string
	modelServed string
	streamed    bool
	cost        int64
}

// finish settles the reservation and records the call. In strict mode (policy
// or AuditSync) both happen before it returns, and a failure to record is an
// error the caller must not hide; otherwise they run in the background, drained
// by Shutdown.
func (pl *Pipeline) finish(ctx context.Context, p *Prepared, o outcome) (int64, error) {
	if p.finished {
		return 0, nil
	}
	p.finished = true
	work := func(ctx context.Context) (int64, error) {
		var cost int64
		if p.Reserve != nil && p.Reserve.GetReservationId() != "" {
			sr, err := guarded(ctx, pl, p.Call.RequestID, "ratelimit", pl.p.Limiter.Settle, &ratelimitv1.SettleRequest{ReservationId: p.Reserve.GetReservationId(),
				InputTokens: o.usage.GetInputTokens(), OutputTokens: o.usage.GetOutputTokens(), ModelServed: o.modelServed})
			if err != nil {
				pl.log.WarnContext(ctx, "settle failed; the reservation expires on its own", "request_id", p.Call.RequestID, "err", err.Error())
				p.flags = append(p.flags, "settle_failed")
			} else {
				cost = sr.GetCostMicros()
			}
		}
		o.cost = cost
		return cost, pl.record(ctx, pl.event(p, o.decision, o.status, o.reasons, o))
	}
	if pl.strict(p) {
		cost, err := work(context.WithoutCancel(ctx))
		if err != nil {
			return cost, &Denial{Kind: KindUnavailable, Message: "the call could not be recorded in the audit log", audited: true}
		}
		return cost, nil
	}
	pl.background(ctx, func(ctx context.Context) { _, _ = work(ctx) })
	return 0, nil
}

// background runs fn after the answer, tracked so that Shutdown waits for it.
// It keeps the request context's values (trace, logging) but not its
// cancellation: the client may be gone before the record is written.
func (pl *Pipeline) background(parent context.Context, fn func(ctx context.Context)) {
	pl.bg.Add(1)
	job := func() {
		defer pl.bg.Done()
		var err error // what a panic in fn leaves: it has been logged
		defer pl.guard(parent, "", "background work", &err)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
		defer cancel()
		fn(ctx)
	}
	select {
	case pl.jobs <- job:
	default:
		go job()
	}
}

// Shutdown waits for background settlements and audit records, or ctx, and
// then stops the background workers (later work still runs, on its own
// goroutine).
func (pl *Pipeline) Shutdown(ctx context.Context) error {
	defer pl.closeOnce.Do(func() { close(pl.closing) })
	done := make(chan struct{})
	go func() { pl.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain pipeline: %w", ctx.Err())
	}
}

// audit records a call that ended before a provider answered.
func (pl *Pipeline) audit(ctx context.Context, p *Prepared, decision auditv1.Decision, status int, reasons []string, response []byte, usage *routerv1.Usage) {
	ev := pl.event(p, decision, status, reasons, outcome{response: response, usage: usage})
	if p.Decision.GetObligations().GetStrictAudit() || pl.p.AuditSync {
		_ = pl.record(context.WithoutCancel(ctx), ev)
		return
	}
	pl.background(ctx, func(ctx context.Context) { _ = pl.record(ctx, ev) })
}

func (pl *Pipeline) record(ctx context.Context, ev *auditv1.AuditEvent) error {
	if err := pl.p.Recorder.Record(ctx, ev); err != nil {
		pl.log.ErrorContext(ctx, "audit event not recorded", "event_id", ev.GetEventId(), "request_id", ev.GetLlmCall().GetRequestId(), "err", err.Error())
		return err
	}
	return nil
}

func (pl *Pipeline) event(p *Prepared, decision auditv1.Decision, status int, reasons []string, o outcome) *auditv1.AuditEvent {
	now := pl.now()
	c := p.Call
	lc := &auditv1.LlmCall{
		RequestId: c.RequestID, Api: c.API, Decision: decision, Reasons: reasons, Status: int32(status),
		LatencyMs: now.Sub(p.start).Milliseconds(), Streamed: o.streamed, ClientIp: c.ClientIP, UserAgent: c.UserAgent,
		PromptRef: p.PromptRef, Provider: o.provider, ModelServed: o.modelServed,
		InputTokens: o.usage.GetInputTokens(), OutputTokens: o.usage.GetOutputTokens(), CostMicros: o.cost,
		AnomalyFlags: slices.Clone(p.flags),
	}
	if len(c.Body) > 0 {
		lc.RequestHmac = pl.p.Hasher.Sum(c.Body)
	}
	if len(o.response) > 0 {
		lc.ResponseHmac = pl.p.Hasher.Sum(o.response)
	}
	if a := p.Auth; a != nil {
		lc.PrincipalId, lc.TeamId, lc.ApiKeyId = a.GetPrincipal().GetId(), a.GetPrincipal().GetTeamId(), a.GetApiKeyId()
	}
	if p.Request != nil {
		lc.ModelRequested = p.Request.Model
		lc.Streamed = p.Request.Stream
	}
	if p.Decision != nil {
		lc.PolicyVersion = p.Decision.GetPolicyVersion()
	}
	if r := p.Redaction; r != nil {
		lc.DataClasses = r.GetDataClasses()
		lc.InjectionScore = r.GetInjectionScore()
		if len(r.GetFindings()) > 0 {
			lc.Findings = map[string]int32{}
			for _, f := range r.GetFindings() {
				lc.Findings[f.GetEntityType()]++
			}
		}
	}
	env := p.Environment
	if env == "" {
		env = c.Environment
	}
	pl.m.call(c.API, decision)
	return &auditv1.AuditEvent{
		EventId: ulid.Make().String(), Time: timestamppb.New(now), Environment: env, SourceService: "gateway", TraceId: c.TraceID,
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: lc},
	}
}

// ListModels lists the models the caller may use.
func (pl *Pipeline) ListModels(ctx context.Context, cred, env string) ([]*routerv1.Model, error) {
	a, err := pl.Authenticate(ctx, cred, env)
	if err != nil {
		return nil, err
	}
	e := a.GetEnvironment()
	if e == "" {
		e = env
	}
	if e == "" {
		e = pl.p.DefaultEnvironment
	}
	d, err := pl.authorize(ctx, &identityv1.AuthorizeRequest{PrincipalId: a.GetPrincipal().GetId(), Action: ActionListModels, Mfa: a.GetMfa(),
		ApiKeyScopes: a.GetScopes(), Resource: &identityv1.Resource{Environment: e}})
	if err != nil {
		return nil, depDenial("identity", err, KindForbidden)
	}
	if !d.GetAllowed() {
		return nil, &Denial{Kind: KindForbidden, Message: "listing models denied by policy", Reasons: d.GetReasons()}
	}
	r, err := pl.p.Router.ListModels(ctx, &routerv1.ListModelsRequest{Environment: e})
	if err != nil {
		return nil, depDenial("router", err, KindUnavailable)
	}
	return r.GetModels(), nil
}

// Reject records a call refused at the door, before the pipeline could run
// (e.g. a body above the size limit), so that it too has its audit record.
func (pl *Pipeline) Reject(ctx context.Context, call *Call, d *Denial) {
	p := &Prepared{Call: call, start: pl.now(), PromptRef: call.PromptRef, Environment: call.Environment}
	pl.audit(ctx, p, d.decision(), d.Status(), d.reasons(), nil, nil)
}
