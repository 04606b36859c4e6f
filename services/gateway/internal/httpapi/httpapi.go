// Package httpapi is the gateway's HTTP front door: the OpenAI-compatible
// /v1/chat/completions, /v1/embeddings and /v1/models, and the
// Anthropic-compatible /v1/messages, streamed (SSE) and not. It reads only the
// headers and the raw body and hands them to the pipeline; errors are written
// in each API's own shape.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulwarkhq/bulwark/services/gateway/internal/llmjson"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

// Headers the gateway reads or writes.
const (
	HeaderRequestID   = "x-request-id"
	HeaderPrompt      = "x-bulwark-prompt"
	HeaderEnvironment = "x-bulwark-environment"
)

// Params configures the front door.
type Params struct {
	Pipeline *pipeline.Pipeline
	Logger   *slog.Logger
	// MaxBodyBytes caps request bodies; 0 means 8 MiB.
	MaxBodyBytes int64
	// Now is the clock for rate-limit reset headers; nil means time.Now.
	Now func() time.Time
}

// API serves the front door.
type API struct {
	pl  *pipeline.Pipeline
	log *slog.Logger
	max int64
	now func() time.Time
	mux *http.ServeMux
}

// New builds the front door.
func New(p Params) (*API, error) {
	if p.Pipeline == nil || p.Logger == nil {
		return nil, errors.New("httpapi: Pipeline and Logger are required")
	}
	if p.MaxBodyBytes <= 0 {
		p.MaxBodyBytes = 8 << 20
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	a := &API{pl: p.Pipeline, log: p.Logger, max: p.MaxBodyBytes, now: p.Now, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /v1/chat/completions", a.complete(familyOpenAI, llmjson.OpenAIChat, "openai.chat"))
	a.mux.HandleFunc("POST /chat/completions", a.complete(familyOpenAI, llmjson.OpenAIChat, "openai.chat"))
	a.mux.HandleFunc("POST /v1/embeddings", a.complete(familyOpenAI, llmjson.OpenAIEmbeddings, "openai.embeddings"))
	a.mux.HandleFunc("POST /v1/messages", a.complete(familyAnthropic, llmjson.AnthropicMessages, "anthropic.messages"))
	a.mux.HandleFunc("GET /v1/models", a.models)
	a.mux.HandleFunc("/v1/", a.notFound)
	return a, nil
}

// ServeHTTP sets the request id and serves the route.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The id is always the gateway's own: a client-chosen id could replay a reservation.
	id := "req_" + ulid.Make().String()
	w.Header().Set(HeaderRequestID, id)
	if strings.HasPrefix(r.URL.Path, "/v1/messages") {
		w.Header().Set("request-id", id)
	}
	a.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
}

type requestIDKey struct{}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

func familyOf(r *http.Request) family {
	if strings.HasPrefix(r.URL.Path, "/v1/messages") || r.Header.Get("anthropic-version") != "" {
		return familyAnthropic
	}
	return familyOpenAI
}

func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, familyOf(r), http.StatusNotFound, pipeline.KindNotFound, "unknown endpoint "+r.Method+" "+r.URL.Path, requestID(r))
}

// credential reads "Authorization: Bearer <key>" or Anthropic's "x-api-key".
func credential(r *http.Request) string {
	if v := r.Header.Get("Authorization"); v != "" {
		if k, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(k)
		}
		if k, ok := strings.CutPrefix(v, "bearer "); ok {
			return strings.TrimSpace(k)
		}
	}
	return strings.TrimSpace(r.Header.Get("x-api-key"))
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func traceID(r *http.Request) string {
	// The gateway's own span (platform.TraceHTTP) continues any caller trace.
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	// traceparent: version-traceid-parentid-flags
	parts := strings.Split(r.Header.Get("traceparent"), "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// readBody reads the body within the size limit; a refusal is written and returned.
func (a *API) readBody(w http.ResponseWriter, r *http.Request, f family) ([]byte, *pipeline.Denial) {
	id := requestID(r)
	tooLarge := &pipeline.Denial{Kind: pipeline.KindTooLarge, Message: "request body exceeds the limit"}
	if r.ContentLength > a.max {
		writeError(w, f, http.StatusRequestEntityTooLarge, pipeline.KindInvalid, tooLarge.Message, id)
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, f, http.StatusRequestEntityTooLarge, pipeline.KindInvalid, tooLarge.Message, id)
			return nil, tooLarge
		}
		d := &pipeline.Denial{Kind: pipeline.KindInvalid, Message: "could not read the request body"}
		writeError(w, f, http.StatusBadRequest, pipeline.KindInvalid, d.Message, id)
		return nil, d
	}
	return body, nil
}

func (a *API) complete(f family, format llmjson.Format, api string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := requestID(r)
		call := &pipeline.Call{
			RequestID: id, API: api, Format: format, Credential: credential(r), Environment: r.Header.Get(HeaderEnvironment),
			PromptRef: strings.TrimSpace(r.Header.Get(HeaderPrompt)), ClientIP: clientIP(r),
			UserAgent: r.UserAgent(), TraceID: traceID(r),
		}
		ctx := r.Context()
		body, d := a.readBody(w, r, f)
		if d != nil {
			d.Reasons = []string{d.Message}
			a.pl.Reject(ctx, call, d)
			return
		}
		call.Body = body
		p, err := a.pl.Prepare(ctx, call)
		if err != nil {
			a.fail(w, f, err, id)
			return
		}
		setLimitHeaders(w.Header(), f, p.Limits(), a.now())
		if p.Request.Stream {
			a.stream(w, r, f, p)
			return
		}
		ans, err := a.pl.Complete(ctx, p)
		if err != nil {
			a.fail(w, f, err, id)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		w.WriteHeader(ans.Status)
		_, _ = w.Write(ans.Body)
	}
}

func (a *API) fail(w http.ResponseWriter, f family, err error, id string) {
	var d *pipeline.Denial
	if errors.As(err, &d) {
		writeDenial(w, f, d, id)
		return
	}
	a.log.Error("gateway request failed", "request_id", id, "err", err.Error())
	writeError(w, f, http.StatusInternalServerError, pipeline.KindInternal, "internal error", id)
}

// sseWriter writes server-sent events. write leaves them in the response's
// buffer; flush sends them; send does both.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

func (s *sseWriter) send(evs ...llmjson.Event) error {
	if err := s.write(evs...); err != nil {
		return err
	}
	return s.flush()
}

func (s *sseWriter) flush() error { return s.rc.Flush() }

func (s *sseWriter) write(evs ...llmjson.Event) error {
	s.buf = s.buf[:0]
	for _, e := range evs {
		if e.Name != "" {
			s.buf = append(s.buf, "event: "...)
			s.buf = append(s.buf, e.Name...)
			s.buf = append(s.buf, '\n')
		}
		s.buf = append(s.buf, "data: "...)
		s.buf = append(s.buf, e.Data...)
		s.buf = append(s.buf, '\n', '\n')
	}
	_, err := s.w.Write(s.buf)
	return err
}

func (a *API) stream(w http.ResponseWriter, r *http.Request, f family, p *pipeline.Prepared) {
	id := requestID(r)
	ctx := r.Context()
	s, err := a.pl.OpenStream(ctx, p)
	if err != nil {
		a.fail(w, f, err, id)
		return
	}
	if s.Status >= 400 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.Status)
		_, _ = w.Write(s.ErrorBody())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sse := &sseWriter{w: w, rc: http.NewResponseController(w)}
	// Events the provider has already sent go out with one flush; the flush
	// comes whenever the stream would wait, so no event waits for the next.
	// The first events go out at once: time to first token is what a
	// streaming client watches.
	s.BeforeWaiting(func() { _ = sse.flush() })
	first := true
	for {
		evs, terminal, done := s.Next()
		if len(evs) > 0 {
			err := sse.write(evs...)
			if err == nil && first {
				err, first = sse.flush(), false
			}
			if err != nil {
				s.Close(ctx)
				return
			}
		}
		if !done {
			continue
		}
		if err := s.Finish(ctx); err != nil {
			_ = sse.send(streamError(f, "the call could not be recorded in the audit log"))
			return
		}
		if s.Err() != nil {
			_ = sse.send(streamError(f, "the provider's stream broke off"))
			return
		}
		if terminal != nil {
			_ = sse.send(*terminal)
		} else {
			_ = sse.flush()
		}
		return
	}
}

func streamError(f family, msg string) llmjson.Event {
	if f == familyAnthropic {
		b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": "api_error", "message": msg}})
		return llmjson.Event{Name: "error", Data: b}
	}
	return llmjson.Event{Data: errorBody(f, http.StatusBadGateway, pipeline.KindProvider, msg, "")}
}

func (a *API) models(w http.ResponseWriter, r *http.Request) {
	f := familyOf(r)
	id := requestID(r)
	models, err := a.pl.ListModels(r.Context(), credential(r), r.Header.Get(HeaderEnvironment))
	if err != nil {
		a.fail(w, f, err, id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if f == familyAnthropic {
		type model struct {
			Type        string `json:"type"`
			ID          string `json:"id"`
			DisplayName string `json:"display_name"`
			CreatedAt   string `json:"created_at"`
		}
		out := struct {
			Data    []model `json:"data"`
			HasMore bool    `json:"has_more"`
			FirstID *string `json:"first_id"`
			LastID  *string `json:"last_id"`
		}{Data: []model{}}
		for _, m := range models {
			out.Data = append(out.Data, model{Type: "model", ID: m.GetId(), DisplayName: m.GetId(), CreatedAt: "2024-01-01T00:00:00Z"})
		}
		if n := len(out.Data); n > 0 {
			out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
		}
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range models {
		out.Data = append(out.Data, model{ID: m.GetId(), Object: "model", Created: 1704067200, OwnedBy: m.GetOwnedBy()})
	}
	_ = json.NewEncoder(w).Encode(out)
}
