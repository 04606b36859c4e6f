package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/sse"
	"github.com/bulwarkhq/bulwark/services/router/internal/translate"
)

// send performs one upstream call under a first-byte timer that stops once the
// response headers arrive (and, for streams, the first event). It returns the
// response and a stop function for the timer.
func (r *Router) send(ctx context.Context, req *UpstreamRequest, firstByte time.Duration) (*UpstreamResponse, *attemptCtx, func(), error) {
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(firstByte, func() { cancel(errFirstByte) })
	res, err := r.p.Upstream.Do(actx, req)
	if err != nil {
		timer.Stop()
		cause := context.Cause(actx)
		cancel(nil)
		if errors.Is(cause, errFirstByte) {
			return nil, nil, nil, &attemptFailure{err: errFirstByte}
		}
		if ctx.Err() != nil {
			return nil, nil, nil, &attemptFailure{err: ErrTimeout}
		}
		return nil, nil, nil, &attemptFailure{err: fmt.Errorf("provider transport: %w", errTransport)}
	}
	return res, &attemptCtx{ctx: actx, timer: timer}, func() { timer.Stop(); cancel(nil) }, nil
}

// attemptCtx is one attempt's context and its first-byte timer.
type attemptCtx struct {
	ctx   context.Context
	timer *time.Timer
}

var errTransport = errors.New("transport failure")

func readLimited(rc io.ReadCloser, limit int64) ([]byte, error) {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes: %w", limit, ErrInvalid)
	}
	return b, nil
}

func usageOf(f Format, body []byte) translate.Usage {
	if f == FormatAnthropicMessages {
		u := gjson.GetManyBytes(body, "usage.input_tokens", "usage.output_tokens", "usage.cache_creation_input_tokens", "usage.cache_read_input_tokens")
		return translate.Usage{Input: u[0].Int() + u[2].Int() + u[3].Int(), Output: u[1].Int()}
	}
	u := gjson.GetManyBytes(body, "usage.prompt_tokens", "usage.completion_tokens")
	return translate.Usage{Input: u[0].Int(), Output: u[1].Int()}
}

// errorBodyFor converts a provider error body into the caller's format.
func errorBodyFor(callerF, providerF Format, status int, body []byte) []byte {
	if callerF == providerF {
		return body
	}
	if callerF == FormatAnthropicMessages {
		return translate.ErrorToAnthropic(status, body)
	}
	return translate.ErrorToOpenAI(status, body)
}

// Complete sends a non-streamed call.
func (r *Router) Complete(ctx context.Context, call Call) (*Result, error) {
	alias, top, err := validate(&call)
	if err != nil {
		return nil, err
	}
	if top.stream.Bool() {
		return nil, fmt.Errorf("body asks for a stream; use StreamComplete: %w", ErrInvalid)
	}
	route, cands, err := r.candidates(&call, alias, OpChat)
	if err != nil {
		return nil, err
	}
	firstByte, total := timeouts(&call, route)
	// A non-streamed answer's headers arrive with its last byte, so the first-byte
	// timeout cannot apply to it: only the total timeout bounds it.
	_ = firstByte
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()

	var res *Result
	var spent time.Duration
	attempts, last, err := r.loop(ctx, &call, route, cands, func(ctx context.Context, c candidate, key keys.Key) error {
		prep, err := r.prepare(&call, top, c, false)
		if err != nil {
			return err
		}
		start := time.Now()
		req := &UpstreamRequest{Provider: c.p, Op: opFor(c.p.Kind), Model: c.d.Model, Key: key, Body: prep.parts, RequestID: call.RequestID}
		up, _, stop, err := r.send(ctx, req, total)
		if err != nil {
			spent += time.Since(start)
			return err
		}
		defer stop()
		body, rerr := readLimited(up.Body, r.p.MaxResponseBytes)
		spent += time.Since(start)
		if rerr != nil {
			if errors.Is(rerr, ErrInvalid) {
				return rerr
			}
			return &attemptFailure{err: fmt.Errorf("read answer: %w", errTransport)}
		}
		pf := providerFormat(c.p.Kind)
		if up.Status != 200 {
			if retryable(up.Status) {
				return &attemptFailure{status: up.Status, body: errorBodyFor(call.Format, pf, up.Status, body), retryAfter: up.RetryAfter}
			}
			res = &Result{Status: up.Status, Body: errorBodyFor(call.Format, pf, up.Status, body), Provider: c.p.Name, Deployment: c.d.Name}
			return nil
		}
		out := &Result{Status: 200, Body: body, Provider: c.p.Name, Deployment: c.d.Name}
		switch {
		case pf == call.Format:
			out.Usage = usageOf(pf, body)
		case call.Format == FormatOpenAIChat:
			out.Body, out.Usage, err = translate.AnthropicToOpenAIResponse(body, r.p.Now())
		default:
			out.Body, out.Usage, err = translate.OpenAIToAnthropicResponse(body)
		}
		if err != nil {
			return &attemptFailure{status: 502, err: fmt.Errorf("translate answer: %w", err)}
		}
		out.ModelServed = gjson.GetBytes(body, "model").Str
		res = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res == nil {
		// Every attempt failed retryably: answer with the last provider error.
		if last.status == 0 {
			if errors.Is(last.err, ErrTimeout) || errors.Is(last.err, errFirstByte) {
				return nil, fmt.Errorf("model %q after %d attempts: %w", alias, attempts, ErrTimeout)
			}
			return nil, fmt.Errorf("model %q after %d attempts: %w", alias, attempts, ErrUnavailable)
		}
		res = &Result{Status: last.status, Body: last.body}
	}
	res.Attempts = attempts
	res.ProviderLatency = spent
	r.log.InfoContext(ctx, "call routed", "request_id", call.RequestID, "model", alias, "provider", res.Provider,
		"deployment", res.Deployment, "status", res.Status, "attempts", attempts,
		"input_tokens", res.Usage.Input, "output_tokens", res.Usage.Output)
	return res, nil
}

// Stream sends a streamed call, calling emit for each event in the caller's format.
// Retries and fallbacks happen only until the first event has been emitted.
func (r *Router) Stream(ctx context.Context, call Call, emit func(StreamEvent) error) (*StreamSummary, error) {
	alias, top, err := validate(&call)
	if err != nil {
		return nil, err
	}
	route, cands, err := r.candidates(&call, alias, OpChat)
	if err != nil {
		return nil, err
	}
	firstByte, total := timeouts(&call, route)
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()

	sum := &StreamSummary{}
	var final *StreamSummary
	attempts, last, err := r.loop(ctx, &call, route, cands, func(ctx context.Context, c candidate, key keys.Key) error {
		prep, err := r.prepare(&call, top, c, true)
		if err != nil {
			return err
		}
		req := &UpstreamRequest{Provider: c.p, Op: opFor(c.p.Kind), Model: c.d.Model, Key: key, Body: prep.parts, Stream: true, RequestID: call.RequestID}
		up, actx, stop, err := r.send(ctx, req, firstByte)
		if err != nil {
			return err
		}
		defer stop()
		pf := providerFormat(c.p.Kind)
		if up.Status != 200 {
			body, _ := readLimited(up.Body, 1<<20)
			eb := errorBodyFor(call.Format, pf, up.Status, body)
			if retryable(up.Status) {
				return &attemptFailure{status: up.Status, body: eb, retryAfter: up.RetryAfter}
			}
			final = &StreamSummary{StreamHead: StreamHead{Provider: c.p.Name, Deployment: c.d.Name, Status: up.Status}}
			return emitError(call.Format, final, eb, emit)
		}
		defer up.Body.Close()
		return r.relay(ctx, actx, &call, c, prep, pf, up, emit, sum, &final)
	})
	if err != nil {
		return nil, err
	}
	if final == nil {
		if last.status == 0 {
			if errors.Is(last.err, ErrTimeout) || errors.Is(last.err, errFirstByte) {
				return nil, fmt.Errorf("model %q after %d attempts: %w", alias, attempts, ErrTimeout)
			}
			return nil, fmt.Errorf("model %q after %d attempts: %w", alias, attempts, ErrUnavailable)
		}
		final = &StreamSummary{StreamHead: StreamHead{Status: last.status}}
		if err := emitError(call.Format, final, last.body, emit); err != nil {
			return nil, err
		}
	}
	final.Attempts = attempts
	r.log.InfoContext(ctx, "stream routed", "request_id", call.RequestID, "model", alias, "provider", final.Provider,
		"deployment", final.Deployment, "status", final.Status, "attempts", attempts,
		"input_tokens", final.Usage.Input, "output_tokens", final.Usage.Output)
	return final, nil
}

func emitError(f Format, head *StreamSummary, body []byte, emit func(StreamEvent) error) error {
	name := ""
	if f == FormatAnthropicMessages {
		name = "error"
	}
	h := head.StreamHead
	return emit(StreamEvent{Name: name, Data: body, Head: &h, Usage: &translate.Usage{}})
}

// errAfterStart marks a failure after the first event: never retried.
type errAfterStart struct{ err error }

func (e *errAfterStart) Error() string { return e.err.Error() }
func (e *errAfterStart) Unwrap() error { return e.err }

// relay reads the provider's events and emits them in the caller's format.
func (r *Router) relay(ctx context.Context, actx *attemptCtx, call *Call, c candidate, prep prepared, pf Format,
	up *UpstreamResponse, emit func(StreamEvent) error, sum *StreamSummary, final **StreamSummary,
) error {
	rd := sse.NewReader(up.Body, 0)
	var tr translate.StreamTranslator
	if pf != call.Format {
		if call.Format == FormatOpenAIChat {
			tr = &translate.AnthropicToOpenAIStream{IncludeUsage: prep.callerUsage, Now: r.p.Now()}
		} else {
			tr = &translate.OpenAIToAnthropicStream{}
		}
	}
	head := &StreamHead{Provider: c.p.Name, Deployment: c.d.Name, Status: 200, ModelServed: c.d.Model}
	started := false
	var usage translate.Usage
	var buf []translate.Event
	send := func(name string, data []byte, terminal bool) error {
		ev := StreamEvent{Name: name, Data: data}
		if !started {
			ev.Head = head
		}
		if terminal {
			u := usage
			ev.Usage = &u
		}
		if err := emit(ev); err != nil {
			return &errAfterStart{err: fmt.Errorf("send to caller: %w", err)}
		}
		started = true
		return nil
	}
	for {
		ev, err := rd.Next()
		if err != nil {
			cause := context.Cause(actx.ctx)
			switch {
			case started && errors.Is(err, io.EOF):
				return &errAfterStart{err: fmt.Errorf("stream ended without its last event: %w", ErrStreamBroken)}
			case started:
				if ctx.Err() != nil {
					return &errAfterStart{err: fmt.Errorf("stream: %w", ErrTimeout)}
				}
				return &errAfterStart{err: fmt.Errorf("stream: %w", ErrStreamBroken)}
			case errors.Is(cause, errFirstByte):
				return &attemptFailure{err: errFirstByte}
			default:
				return &attemptFailure{err: fmt.Errorf("stream before first event: %w", errTransport)}
			}
		}
		if !started {
			actx.timer.Stop()
			if head.ModelServed == c.d.Model {
				if m := modelOfEvent(pf, ev.Data); m != "" {
					head.ModelServed = m
				}
			}
		}
		if tr == nil {
			terminal := false
			if pf == FormatOpenAIChat {
				if string(ev.Data) == "[DONE]" {
					terminal = true
				} else if bytes.Contains(ev.Data, []byte(`"usage":{`)) {
					u := gjson.GetManyBytes(ev.Data, "usage.prompt_tokens", "usage.completion_tokens", "choices.#")
					usage = translate.Usage{Input: u[0].Int(), Output: u[1].Int()}
					if prep.injectedOnly && u[2].Int() == 0 {
						continue // the caller did not ask for the usage chunk
					}
				}
			} else {
				switch ev.Name {
				case "message_start":
					u := gjson.GetManyBytes(ev.Data, "message.usage.input_tokens", "message.usage.output_tokens",
						"message.usage.cache_creation_input_tokens", "message.usage.cache_read_input_tokens")
					usage = translate.Usage{Input: u[0].Int() + u[2].Int() + u[3].Int(), Output: u[1].Int()}
				case "message_delta":
					u := gjson.GetManyBytes(ev.Data, "usage.output_tokens", "usage.input_tokens")
					usage.Output = u[0].Int()
					if u[1].Int() > 0 {
						usage.Input = u[1].Int()
					}
				case "message_stop":
					terminal = true
				}
			}
			if err := send(ev.Name, ev.Data, terminal); err != nil {
				return err
			}
			if terminal {
				break
			}
			continue
		}
		buf, err = tr.Feed(buf[:0], translate.Event{Name: ev.Name, Data: ev.Data})
		if err != nil {
			if started {
				return &errAfterStart{err: fmt.Errorf("translate stream: %w", ErrStreamBroken)}
			}
			return &attemptFailure{status: 502, err: fmt.Errorf("translate stream: %w", err)}
		}
		usage = tr.Usage()
		done := false
		for _, out := range buf {
			terminal := (call.Format == FormatOpenAIChat && string(out.Data) == "[DONE]") ||
				(call.Format == FormatAnthropicMessages && out.Name == "message_stop")
			if err := send(out.Name, out.Data, terminal); err != nil {
				return err
			}
			done = done || terminal
		}
		if done {
			break
		}
	}
	sum.StreamHead = *head
	sum.Usage = usage
	*final = sum
	return nil
}

func modelOfEvent(f Format, data []byte) string {
	if f == FormatAnthropicMessages {
		return gjson.GetBytes(data, "message.model").Str
	}
	return gjson.GetBytes(data, "model").Str
}

// EmbedCall is an embeddings call (OpenAI format).
type EmbedCall struct {
	RequestID        string
	Environment      string
	Body             []byte
	DataClasses      []string
	AllowedProviders []string
}

// Embed sends an embeddings call to an OpenAI-family deployment.
func (r *Router) Embed(ctx context.Context, ec EmbedCall) (*Result, error) {
	call := Call{RequestID: ec.RequestID, Environment: ec.Environment, Format: FormatOpenAIChat, Body: ec.Body,
		DataClasses: ec.DataClasses, AllowedProviders: ec.AllowedProviders}
	alias, top, err := validate(&call)
	if err != nil {
		return nil, err
	}
	route, cands, err := r.candidates(&call, alias, OpEmbeddings)
	if err != nil {
		return nil, err
	}
	_, total := timeouts(&call, route)
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	var res *Result
	attempts, last, err := r.loop(ctx, &call, route, cands, func(ctx context.Context, c candidate, key keys.Key) error {
		edits, _ := requestEdits(call.Body, top, c.d.Model, false, true)
		req := &UpstreamRequest{Provider: c.p, Op: OpEmbeddings, Model: c.d.Model, Key: key, Body: patch(call.Body, edits), RequestID: call.RequestID}
		up, _, stop, err := r.send(ctx, req, total)
		if err != nil {
			return err
		}
		defer stop()
		body, rerr := readLimited(up.Body, r.p.MaxResponseBytes)
		if rerr != nil {
			return &attemptFailure{err: fmt.Errorf("read answer: %w", errTransport)}
		}
		if up.Status != 200 && retryable(up.Status) {
			return &attemptFailure{status: up.Status, body: body, retryAfter: up.RetryAfter}
		}
		u := gjson.GetBytes(body, "usage.prompt_tokens").Int()
		res = &Result{Status: up.Status, Body: body, Provider: c.p.Name, Deployment: c.d.Name,
			ModelServed: gjson.GetBytes(body, "model").Str, Usage: translate.Usage{Input: u}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res == nil {
		if last.status == 0 {
			return nil, fmt.Errorf("model %q after %d attempts: %w", alias, attempts, ErrUnavailable)
		}
		res = &Result{Status: last.status, Body: last.body}
	}
	res.Attempts = attempts
	return res, nil
}

// Models lists aliases with the providers that can serve them, for callers in env
// ("" skips the key check).
func (r *Router) Models(ctx context.Context, env string, keyOK func(ctx context.Context, env, provider string) bool) []catalog.Route {
	var out []catalog.Route
	for _, rt := range r.p.Catalog.Routes() {
		var ds []catalog.Deployment
		for _, d := range rt.Deployments {
			p, ok := r.p.Catalog.Provider(d.Provider)
			if !ok || !p.Enabled {
				continue
			}
			if env != "" && keyOK != nil && !keyOK(ctx, env, p.Name) {
				continue
			}
			ds = append(ds, d)
		}
		if len(ds) > 0 {
			rt.Deployments = ds
			out = append(out, rt)
		}
	}
	return out
}
