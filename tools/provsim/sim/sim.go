// Package sim is a deterministic simulator of the OpenAI and Anthropic HTTP APIs.
//
// It answers /v1/chat/completions, /v1/embeddings, /v1/models (OpenAI), Azure OpenAI
// deployment URLs and /v1/messages (Anthropic) in each family's wire format, streamed
// (SSE) and not, with the family's error bodies and rate-limit headers. Answers are
// deterministic: the last user message echoed back, or a scripted reply. Faults
// (latency, 429 with Retry-After, 5xx, connection resets, failures in the middle of a
// stream) are injected per request with the X-Provsim-Fault header or scripted with
// Sim.Inject. Every request received is recorded so tests can assert what reached the
// provider, including its credentials.
//
// A Sim is an http.Handler: mount it in httptest.NewServer for in-process tests, or
// run cmd/provsim.
package sim

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultHeader is the request header that injects a fault into that request, e.g.
// "status=429; retry-after=2" or "midstream=3" (see ParseFault).
const FaultHeader = "X-Provsim-Fault"

// Params configure a simulator.
type Params struct {
	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger
	// Reply, when set, is the answer to every call instead of the echo of the last user message.
	Reply string
	// Models are the model ids /v1/models lists; empty lists a small default set.
	Models []string
	// APIKeys, when not empty, are the only credentials accepted (401 otherwise).
	// When empty any non-empty credential is accepted; a missing one is still a 401.
	APIKeys []string
	// ChunkDelay is slept between streamed events (0 streams as fast as possible).
	ChunkDelay time.Duration
	// EmbeddingDims is the default embedding length (8 when 0).
	EmbeddingDims int
	// Now is the clock for "created" fields; nil means time.Now.
	Now func() time.Time
}

// Request is one request the simulator received.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	Time   time.Time
}

// Sim is the simulator. It is safe for concurrent use.
type Sim struct {
	p   Params
	log *slog.Logger
	seq atomic.Int64

	mu       sync.Mutex
	reqs     []Request
	faults   []Fault
	keys     []string
	reply    string
	recorded bool
}

// New returns a simulator.
func New(p Params) *Sim {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.EmbeddingDims <= 0 {
		p.EmbeddingDims = 8
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if len(p.Models) == 0 {
		p.Models = []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-5", "claude-haiku-4-5"}
	}
	return &Sim{p: p, log: p.Logger, keys: slices.Clone(p.APIKeys), reply: p.Reply, recorded: true}
}

// Requests returns a copy of every request received so far, oldest first.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// RequestCount is the number of requests received so far.
func (s *Sim) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// Reset forgets recorded requests and pending scripted faults.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
	s.faults = nil
}

// SetRecording turns request recording on or off (benchmarks turn it off).
func (s *Sim) SetRecording(on bool) {
	s.mu.Lock()
	s.recorded = on
	s.mu.Unlock()
}

// SetReply changes the scripted reply; "" returns to echoing.
func (s *Sim) SetReply(reply string) {
	s.mu.Lock()
	s.reply = reply
	s.mu.Unlock()
}

// SetAPIKeys replaces the accepted credentials; empty accepts any non-empty one.
func (s *Sim) SetAPIKeys(keys ...string) {
	s.mu.Lock()
	s.keys = slices.Clone(keys)
	s.mu.Unlock()
}

// Inject scripts faults. Each fault applies to the next Times matching requests
// (Times 0 means once, negative means every matching request until Reset).
func (s *Sim) Inject(f ...Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, f...)
	s.mu.Unlock()
}

// takeFault returns the first scripted fault matching the request, consuming one use.
func (s *Sim) takeFault(path, model string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.faults {
		f := &s.faults[i]
		if !f.matches(path, model) {
			continue
		}
		out := *f
		switch {
		case f.Times < 0:
		case f.Times <= 1:
			s.faults = slices.Delete(s.faults, i, i+1)
		default:
			f.Times--
		}
		return out, true
	}
	return Fault{}, false
}

func (s *Sim) currentReply() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reply
}

func (s *Sim) keyAccepted(key string) bool {
	if key == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys) == 0 || slices.Contains(s.keys, key)
}

// ServeHTTP routes a request to the family it belongs to.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.recorded {
		s.reqs = append(s.reqs, Request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, Time: s.p.Now(),
		})
	}
	s.mu.Unlock()
	s.log.DebugContext(r.Context(), "provsim request", "method", r.Method, "path", r.URL.Path, "bytes", len(body))

	path := r.URL.Path
	switch {
	case path == "/v1/messages" || path == "/v1/messages/count_tokens":
		s.serveAnthropic(w, r, body)
	case strings.HasPrefix(path, "/openai/deployments/"):
		s.serveAzure(w, r, body)
	case path == "/v1/chat/completions" || path == "/chat/completions":
		s.serveOpenAIChat(w, r, body, "", openAIAuth(r))
	case path == "/v1/embeddings" || path == "/embeddings":
		s.serveOpenAIEmbeddings(w, r, body, "", openAIAuth(r))
	case path == "/v1/models" || path == "/models":
		if r.Header.Get("anthropic-version") != "" || r.Header.Get("x-api-key") != "" {
			s.serveAnthropicModels(w, r)
			return
		}
		s.serveOpenAIModels(w, r)
	default:
		if isAnthropicRequest(r) {
			writeAnthropicError(w, http.StatusNotFound, "not_found_error", "Not found", "")
			return
		}
		writeOpenAIError(w, http.StatusNotFound, "invalid_request_error", "Invalid URL ("+r.Method+" "+path+")", "", "")
	}
}

func isAnthropicRequest(r *http.Request) bool {
	return r.Header.Get("anthropic-version") != "" || r.Header.Get("x-api-key") != ""
}

func openAIAuth(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if k, ok := strings.CutPrefix(v, "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	return ""
}

// serveAzure answers /openai/deployments/{name}/chat/completions and .../embeddings.
func (s *Sim) serveAzure(w http.ResponseWriter, r *http.Request, body []byte) {
	rest := strings.TrimPrefix(r.URL.Path, "/openai/deployments/")
	deployment, op, ok := strings.Cut(rest, "/")
	if !ok || deployment == "" {
		writeOpenAIError(w, http.StatusNotFound, "", "Resource not found", "404", "")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		writeOpenAIError(w, http.StatusBadRequest, "", "Missing API version parameter.", "BadRequest", "")
		return
	}
	key := r.Header.Get("api-key")
	if key == "" {
		key = openAIAuth(r)
	}
	switch op {
	case "chat/completions":
		s.serveOpenAIChat(w, r, body, deployment, key)
	case "embeddings":
		s.serveOpenAIEmbeddings(w, r, body, deployment, key)
	default:
		writeOpenAIError(w, http.StatusNotFound, "", "Resource not found", "404", "")
	}
}

// applyFault runs the pre-response part of a fault (latency, reset, status) and
// reports whether the request was fully answered by it.
func (s *Sim) applyFault(w http.ResponseWriter, r *http.Request, f Fault, family family) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Reset {
		resetConnection(w)
		return true
	}
	if f.Status != 0 && f.Status != http.StatusOK {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
			if family == familyOpenAI {
				w.Header().Set("retry-after-ms", retryAfterMS(f.RetryAfter))
			}
		}
		msg := f.Message
		if family == familyAnthropic {
			typ := anthropicErrorType(f.Status)
			if msg == "" {
				msg = anthropicDefaultMessage(f.Status)
			}
			writeAnthropicError(w, f.Status, typ, msg, "")
		} else {
			typ, code := openAIErrorType(f.Status)
			if msg == "" {
				msg = openAIDefaultMessage(f.Status)
			}
			writeOpenAIError(w, f.Status, typ, msg, code, "")
		}
		return true
	}
	return false
}

// resetConnection drops the connection without an answer. On HTTP/1 the socket is
// closed with an RST; on HTTP/2 the stream is reset.
func resetConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// abortStream ends a response that has started, so the client sees a truncated body.
func abortStream(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

type family int

const (
	familyOpenAI family = iota
	familyAnthropic
)

// sseWriter writes server-sent events and flushes each one.
type sseWriter struct {
	w     http.ResponseWriter
	fl    http.Flusher
	buf   bytes.Buffer
	delay time.Duration
	n     int
	fault Fault
	ctx   interface{ Done() <-chan struct{} }
}

func (e *sseWriter) event(name string, data []byte) {
	if e.fault.MidStream > 0 && e.n >= e.fault.MidStream {
		if e.fault.MidStreamError && e.fault.family == familyAnthropic {
			e.buf.Reset()
			e.buf.WriteString("event: error\ndata: ")
			e.buf.WriteString(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
			e.buf.WriteString("\n\n")
			_, _ = e.w.Write(e.buf.Bytes())
			e.fl.Flush()
			panic(errStreamEnded)
		}
		if e.fault.MidStreamError {
			e.buf.Reset()
			e.buf.WriteString(`data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`)
			e.buf.WriteString("\n\n")
			_, _ = e.w.Write(e.buf.Bytes())
			e.fl.Flush()
			panic(errStreamEnded)
		}
		abortStream(e.w)
	}
	if e.delay > 0 && e.n > 0 {
		select {
		case <-time.After(e.delay):
		case <-e.ctx.Done():
			panic(errStreamEnded)
		}
	}
	e.n++
	e.buf.Reset()
	if name != "" {
		e.buf.WriteString("event: ")
		e.buf.WriteString(name)
		e.buf.WriteByte('\n')
	}
	e.buf.WriteString("data: ")
	e.buf.Write(data)
	e.buf.WriteString("\n\n")
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		panic(errStreamEnded)
	}
	e.fl.Flush()
}

type streamEnded struct{}

var errStreamEnded = &streamEnded{}

// runStream sets SSE headers and runs fn, turning errStreamEnded panics into a normal end.
func (s *Sim) runStream(w http.ResponseWriter, r *http.Request, f Fault, fam family, fn func(e *sseWriter)) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	f.family = fam
	e := &sseWriter{w: w, fl: fl, delay: s.p.ChunkDelay, fault: f, ctx: r.Context()}
	if f.ChunkDelay > 0 {
		e.delay = f.ChunkDelay
	}
	defer func() {
		if v := recover(); v != nil && v != errStreamEnded {
			panic(v)
		}
	}()
	fn(e)
}
