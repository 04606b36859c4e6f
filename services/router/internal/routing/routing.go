// Package routing sends a call to a provider: it resolves the model alias to
// deployments, filters them by policy, vendor facts, key availability and circuit
// state, balances by weight, retries retryable failures with jittered backoff
// (honouring Retry-After), falls back in priority order, translates between the
// OpenAI and Anthropic formats when caller and provider differ, and reports usage.
// It never retries once a streamed answer has started reaching the caller.
package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/tidwall/gjson"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/translate"
)

// Sentinel errors.
var (
	// ErrInvalid is a call that cannot be routed as sent.
	ErrInvalid = errors.New("invalid call")
	// ErrUnknownModel is an alias with no route.
	ErrUnknownModel = errors.New("unknown model")
	// ErrNotAllowed is a call whose allowed providers exclude every deployment.
	ErrNotAllowed = errors.New("no allowed provider serves the model")
	// ErrUnavailable is a call no deployment could answer (keys, breakers, network).
	ErrUnavailable = errors.New("no provider available")
	// ErrTimeout is a call that ran out of time.
	ErrTimeout = errors.New("provider timed out")
	// ErrStreamBroken is a stream that failed after it had started.
	ErrStreamBroken = errors.New("provider stream broken")

	errFirstByte = errors.New("first byte timeout")
)

// Format is a wire format.
type Format int

// Formats.
const (
	FormatUnspecified Format = iota
	FormatOpenAIChat
	FormatAnthropicMessages
)

// Op is the provider operation.
type Op int

// Ops.
const (
	OpChat       Op = iota // OpenAI /chat/completions
	OpMessages             // Anthropic /v1/messages
	OpEmbeddings           // OpenAI /embeddings
)

// UpstreamRequest is one HTTP call to a provider.
type UpstreamRequest struct {
	Provider  catalog.Provider
	Op        Op
	Model     string
	Key       keys.Key
	Body      [][]byte // written in order; never copied
	Stream    bool
	RequestID string
}

// Len is the body length.
func (r *UpstreamRequest) Len() int64 {
	var n int64
	for _, p := range r.Body {
		n += int64(len(p))
	}
	return n
}

// UpstreamResponse is the provider's answer.
type UpstreamResponse struct {
	Status     int
	RetryAfter time.Duration
	Body       io.ReadCloser
}

// Upstream performs provider HTTP calls. A returned error is a transport failure
// (connection refused or reset, timeout) and is retryable.
type Upstream interface {
	Do(ctx context.Context, req *UpstreamRequest) (*UpstreamResponse, error)
}

// KeySource hands out provider keys.
type KeySource interface {
	Key(ctx context.Context, env, provider, name string) (keys.Key, error)
}

// BreakerSettings tune the per-deployment circuit breakers.
type BreakerSettings struct {
	// ConsecutiveFailures that open the breaker (5 when 0).
	ConsecutiveFailures uint32
	// OnStateChange, when set, is told each deployment circuit's new state (metrics).
	OnStateChange func(deployment, state string)
	// OpenFor is how long an open breaker rejects before letting a probe through (30 s when 0).
	OpenFor time.Duration
}

// Params configure a Router.
type Params struct {
	Catalog  *catalog.Catalog
	Keys     KeySource
	Upstream Upstream
	Logger   *slog.Logger
	Breaker  BreakerSettings
	// BackoffBase and BackoffMax bound the jittered exponential backoff (100 ms and 5 s when 0).
	BackoffBase, BackoffMax time.Duration
	// MaxRetryAfter caps how long a Retry-After is honoured before falling back instead (30 s when 0).
	MaxRetryAfter time.Duration
	// MaxResponseBytes bounds a non-streamed answer (32 MiB when 0).
	MaxResponseBytes int64
	Now              func() time.Time
	// Rand returns a float in [0,1) for balancing and jitter; nil uses math/rand/v2.
	Rand  func() float64
	Sleep func(ctx context.Context, d time.Duration) error
}

// Router routes calls.
type Router struct {
	p        Params
	log      *slog.Logger
	mu       sync.Mutex
	breakers map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

// New returns a Router.
func New(p Params) (*Router, error) {
	if p.Catalog == nil || p.Keys == nil || p.Upstream == nil {
		return nil, fmt.Errorf("new router: catalog, keys and upstream are required: %w", ErrInvalid)
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Breaker.ConsecutiveFailures == 0 {
		p.Breaker.ConsecutiveFailures = 5
	}
	if p.Breaker.OpenFor <= 0 {
		p.Breaker.OpenFor = 30 * time.Second
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = 100 * time.Millisecond
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = 5 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 30 * time.Second
	}
	if p.MaxResponseBytes <= 0 {
		p.MaxResponseBytes = 32 << 20
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	return &Router{p: p, log: p.Logger, breakers: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Call is one call.
type Call struct {
	RequestID        string
	Environment      string
	Format           Format
	Body             []byte
	DataClasses      []string
	AllowedProviders []string
	FirstByteTimeout time.Duration
	TotalTimeout     time.Duration
}

// Result is a non-streamed answer.
type Result struct {
	Status          int
	Body            []byte
	Provider        string
	Deployment      string
	ModelServed     string
	Usage           translate.Usage
	Attempts        int
	ProviderLatency time.Duration
}

// StreamEvent is one event relayed to the caller.
type StreamEvent struct {
	Name string
	// Data is valid only during the emit call.
	Data []byte
	// Head is set on the first event.
	Head *StreamHead
	// Usage is set on the last event.
	Usage *translate.Usage
}

// StreamHead describes who answers a stream.
type StreamHead struct {
	Provider, Deployment, ModelServed string
	Status                            int
}

// StreamSummary is what a finished stream reports.
type StreamSummary struct {
	StreamHead
	Usage    translate.Usage
	Attempts int
}

// candidate is a deployment that may be tried.
type candidate struct {
	d       catalog.Deployment
	p       catalog.Provider
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func (r *Router) breaker(route string, d catalog.Deployment) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	name := route + "/" + d.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.breakers[name]
	if !ok {
		n := r.p.Breaker.ConsecutiveFailures
		log, notify := r.log, r.p.Breaker.OnStateChange
		b = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1,
			Timeout:     r.p.Breaker.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= n },
			OnStateChange: func(name string, from, to gobreaker.State) {
				log.Warn("deployment circuit changed", "deployment", name, "from", from.String(), "to", to.String())
				if notify != nil {
					notify(name, to.String())
				}
			},
		})
		r.breakers[name] = b
	}
	return b
}

// BreakerState reports a deployment's circuit state ("closed", "open", "half-open").
func (r *Router) BreakerState(route, deployment string) string {
	r.mu.Lock()
	b, ok := r.breakers[route+"/"+deployment]
	r.mu.Unlock()
	if !ok {
		return gobreaker.StateClosed.String()
	}
	return b.State().String()
}

// candidates resolves the alias into an ordered list of deployments.
func (r *Router) candidates(call *Call, alias string, op Op) (catalog.Route, []candidate, error) {
	route, ok := r.p.Catalog.Route(alias)
	if !ok {
		return route, nil, fmt.Errorf("model %q: %w", alias, ErrUnknownModel)
	}
	var out []candidate
	var riskErr error
	allowedSeen := false
	for _, d := range route.Deployments {
		if len(call.AllowedProviders) > 0 && !slices.Contains(call.AllowedProviders, d.Provider) {
			continue
		}
		allowedSeen = true
		p, ok := r.p.Catalog.Provider(d.Provider)
		if !ok || !p.Enabled {
			continue
		}
		if op == OpEmbeddings && p.Kind == catalog.KindAnthropic {
			continue
		}
		if err := r.p.Catalog.CheckVendor(p, call.DataClasses); err != nil {
			if riskErr == nil {
				riskErr = err
			}
			continue
		}
		out = append(out, candidate{d: d, p: p, breaker: r.breaker(route.Alias, d)})
	}
	if len(out) == 0 {
		switch {
		case !allowedSeen:
			return route, nil, fmt.Errorf("model %q: %w", alias, ErrNotAllowed)
		case riskErr != nil:
			return route, nil, riskErr
		default:
			return route, nil, fmt.Errorf("model %q: every provider disabled: %w", alias, ErrUnavailable)
		}
	}
	// Priority ascending; weighted random order within a priority (Efraimidis–Spirakis).
	score := make([]float64, len(out))
	for i, c := range out {
		w := float64(c.d.Weight)
		if w <= 0 {
			w = 1
		}
		score[i] = math.Pow(r.p.Rand(), 1/w)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		pa, pb := out[a].d.Priority, out[b].d.Priority
		if pa != pb {
			return pa - pb
		}
		switch {
		case score[a] > score[b]:
			return -1
		case score[a] < score[b]:
			return 1
		}
		return 0
	})
	sorted := make([]candidate, len(out))
	for i, j := range idx {
		sorted[i] = out[j]
	}
	return route, sorted, nil
}

// key picks a key for the deployment, balancing across its key names and skipping unreadable ones.
func (r *Router) key(ctx context.Context, env string, c candidate) (keys.Key, error) {
	names := c.d.KeyNames
	if len(names) == 0 {
		return r.p.Keys.Key(ctx, env, c.p.Name, "")
	}
	start := int(r.p.Rand() * float64(len(names)))
	var last error
	for i := range names {
		k, err := r.p.Keys.Key(ctx, env, c.p.Name, names[(start+i)%len(names)])
		if err == nil {
			return k, nil
		}
		last = err
	}
	return keys.Key{}, last
}

func (r *Router) backoff(n int, retryAfter time.Duration) time.Duration {
	d := r.p.BackoffBase << min(n, 16)
	if d > r.p.BackoffMax || d <= 0 {
		d = r.p.BackoffMax
	}
	d = time.Duration(float64(d) * (0.5 + r.p.Rand()/2)) // jitter in [d/2, d)
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

// retryable reports whether an HTTP status may be retried.
func retryable(status int) bool {
	return status == 429 || status == 408 || status >= 500
}

// providerFormat is the format a provider kind speaks.
func providerFormat(k catalog.Kind) Format {
	if k == catalog.KindAnthropic {
		return FormatAnthropicMessages
	}
	return FormatOpenAIChat
}

func opFor(k catalog.Kind) Op {
	if k == catalog.KindAnthropic {
		return OpMessages
	}
	return OpChat
}

// prepared is the body for one deployment.
type prepared struct {
	parts        [][]byte
	translated   bool
	callerUsage  bool // OpenAI caller asked for usage in its stream
	injectedOnly bool // router added include_usage: drop the usage-only chunk
}

func (r *Router) prepare(call *Call, top topLevel, c candidate, stream bool) (prepared, error) {
	pf := providerFormat(c.p.Kind)
	if pf == call.Format {
		edits, callerUsage := requestEdits(call.Body, top, c.d.Model, stream, pf == FormatOpenAIChat)
		return prepared{parts: patch(call.Body, edits), callerUsage: callerUsage, injectedOnly: stream && pf == FormatOpenAIChat && !callerUsage}, nil
	}
	switch call.Format {
	case FormatOpenAIChat:
		b, inc, err := translate.OpenAIToAnthropicRequest(call.Body, c.d.Model)
		if err != nil {
			return prepared{}, fmt.Errorf("translate request: %w", ErrInvalid)
		}
		if bt, _ := scanTop(b); stream && !bt.stream.Bool() {
			edits := setField(b, bt.stream, "stream", []byte("true"), nil)
			return prepared{parts: patch(b, edits), translated: true, callerUsage: inc}, nil
		}
		return prepared{parts: [][]byte{b}, translated: true, callerUsage: inc}, nil
	default:
		b, err := translate.AnthropicToOpenAIRequest(call.Body, c.d.Model)
		if err != nil {
			return prepared{}, fmt.Errorf("translate request: %w", ErrInvalid)
		}
		if stream {
			bt, _ := scanTop(b)
			edits, _ := requestEdits(b, bt, c.d.Model, true, true)
			return prepared{parts: patch(b, edits), translated: true}, nil
		}
		return prepared{parts: [][]byte{b}, translated: true}, nil
	}
}

// validate reads the body's top level once: a JSON object with a string model. The
// rest of the body is not validated here (the provider does that, and cross-format
// calls decode it fully); scanning it once keeps large bodies cheap.
func validate(call *Call) (string, topLevel, error) {
	if call.Format != FormatOpenAIChat && call.Format != FormatAnthropicMessages {
		return "", topLevel{}, fmt.Errorf("format: %w", ErrInvalid)
	}
	top, ok := scanTop(call.Body)
	if !ok {
		return "", top, fmt.Errorf("body is not valid JSON: %w", ErrInvalid)
	}
	if m := top.model; m.Type != gjson.String || m.Str == "" {
		return "", top, fmt.Errorf("body has no model: %w", ErrInvalid)
	}
	if call.Environment == "" {
		return "", top, fmt.Errorf("environment: %w", ErrInvalid)
	}
	return strings.Clone(top.model.Str), top, nil
}

func timeouts(call *Call, route catalog.Route) (firstByte, total time.Duration) {
	firstByte, total = route.FirstByteTimeout, route.TotalTimeout
	if call.FirstByteTimeout > 0 {
		firstByte = call.FirstByteTimeout
	}
	if call.TotalTimeout > 0 {
		total = call.TotalTimeout
	}
	if firstByte <= 0 {
		firstByte = catalog.DefaultFirstByteTimeout
	}
	if total <= 0 {
		total = catalog.DefaultTotalTimeout
	}
	return firstByte, total
}

// attemptFailure describes a failed attempt that may be retried.
type attemptFailure struct {
	status     int
	body       []byte
	retryAfter time.Duration
	err        error
}

func (f *attemptFailure) Error() string {
	if f.err != nil {
		return f.err.Error()
	}
	return fmt.Sprintf("provider status %d", f.status)
}

// loop runs attempts over candidates until one succeeds or gives a final answer.
// try returns nil on success (or a final non-retryable answer), an *attemptFailure to
// retry, or another error to stop with. A deployment without a readable key or with
// an open circuit is skipped for the rest of the call; going back to a deployment
// already tried waits a jittered backoff (at least its Retry-After) first.
func (r *Router) loop(ctx context.Context, call *Call, route catalog.Route, cands []candidate,
	try func(ctx context.Context, c candidate, key keys.Key) error,
) (attempts int, last *attemptFailure, err error) {
	budget := route.Attempts()
	skip := make([]bool, len(cands))
	tried := make([]bool, len(cands))
	skipped := 0
	var lastRetryAfter time.Duration
	noKey := 0
	for i := 0; attempts < budget && skipped < len(cands); i++ {
		ci := i % len(cands)
		if skip[ci] {
			continue
		}
		c := cands[ci]
		if tried[ci] {
			if lastRetryAfter > r.p.MaxRetryAfter {
				break
			}
			wait := r.backoff(attempts-1, lastRetryAfter)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				break
			}
			if err := r.p.Sleep(ctx, wait); err != nil {
				return attempts, last, fmt.Errorf("wait to retry: %w", ErrTimeout)
			}
		}
		if c.breaker.State() == gobreaker.StateOpen {
			skip[ci] = true
			skipped++
			continue
		}
		key, kerr := r.key(ctx, call.Environment, c)
		if kerr != nil {
			r.log.WarnContext(ctx, "deployment unavailable: no key", "request_id", call.RequestID, "provider", c.p.Name, "deployment", c.d.Name)
			skip[ci] = true
			skipped++
			noKey++
			continue
		}
		done, berr := c.breaker.Allow()
		if berr != nil {
			skip[ci] = true
			skipped++
			continue
		}
		attempts++
		tried[ci] = true
		err := try(ctx, c, key)
		var f *attemptFailure
		switch {
		case err == nil:
			done(nil)
			return attempts, nil, nil
		case errors.As(err, &f):
			done(f)
			last = f
			lastRetryAfter = f.retryAfter
			r.log.WarnContext(ctx, "provider attempt failed", "request_id", call.RequestID, "provider", c.p.Name,
				"deployment", c.d.Name, "attempt", attempts, "status", f.status, "err", f.err)
			if ctx.Err() != nil {
				return attempts, last, fmt.Errorf("model %q: %w", route.Alias, ErrTimeout)
			}
		default:
			done(nil)
			return attempts, last, err
		}
	}
	if last == nil {
		if noKey == len(cands) {
			return attempts, nil, fmt.Errorf("model %q: no provider key readable: %w", route.Alias, ErrUnavailable)
		}
		return attempts, nil, fmt.Errorf("model %q: %w", route.Alias, ErrUnavailable)
	}
	return attempts, last, nil
}
