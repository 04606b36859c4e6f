package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type anMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Messages  []anMessage     `json:"messages"`
	Stream    bool            `json:"stream"`
	Tools     []struct {
		Name string `json:"name"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
}

// writeAnthropicError writes {"type":"error","error":{"type","message"},"request_id"}.
func writeAnthropicError(w http.ResponseWriter, status int, typ, msg, _ string) {
	w.Header().Set("request-id", "req_sim")
	writeJSON(w, status, map[string]any{
		"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": "req_sim",
	})
}

func anthropicErrorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	default:
		if status >= 500 {
			return "api_error"
		}
		return "invalid_request_error"
	}
}

func anthropicDefaultMessage(status int) string {
	switch status {
	case 429:
		return "Number of request tokens has exceeded your per-minute rate limit."
	case 529:
		return "Overloaded"
	case 401:
		return "invalid x-api-key"
	default:
		if status >= 500 {
			return "Internal server error"
		}
		return "Invalid request"
	}
}

func (s *Sim) anthropicRateHeaders(w http.ResponseWriter) {
	h := w.Header()
	reset := s.p.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	for _, k := range []string{"requests", "tokens", "input-tokens", "output-tokens"} {
		h.Set("anthropic-ratelimit-"+k+"-limit", "4000")
		h.Set("anthropic-ratelimit-"+k+"-remaining", "3999")
		h.Set("anthropic-ratelimit-"+k+"-reset", reset)
	}
	h.Set("request-id", fmt.Sprintf("req_sim%06d", s.seq.Load()))
}

func (s *Sim) serveAnthropic(w http.ResponseWriter, r *http.Request, body []byte) {
	n := s.seq.Add(1)
	if r.Method != http.MethodPost {
		writeAnthropicError(w, http.StatusMethodNotAllowed, "invalid_request_error", "Method not allowed", "")
		return
	}
	if !s.keyAccepted(anthropicAuth(r)) {
		writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key", "")
		return
	}
	if r.Header.Get("anthropic-version") == "" {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required", "")
		return
	}
	var req anRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "There was an error parsing the body of your request", "")
		return
	}
	f, err := s.faultFor(r, req.Model)
	if err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "bad "+FaultHeader, "")
		return
	}
	s.anthropicRateHeaders(w)
	if s.applyFault(w, r, f, familyAnthropic) {
		return
	}
	var inText strings.Builder
	inText.WriteString(contentText(req.System))
	inText.WriteByte(' ')
	var lastRole, lastText string
	for _, m := range req.Messages {
		t := contentText(m.Content)
		inText.WriteString(t)
		inText.WriteByte(' ')
		lastRole, lastText = m.Role, t
		if m.Role == "user" && strings.Contains(string(m.Content), `"tool_result"`) {
			lastRole = "tool"
		}
	}
	if r.URL.Path == "/v1/messages/count_tokens" {
		writeJSON(w, http.StatusOK, map[string]any{"input_tokens": countTokens(inText.String())})
		return
	}
	switch {
	case req.Model == "":
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "model: Field required", "")
		return
	case req.MaxTokens <= 0:
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required", "")
		return
	case len(req.Messages) == 0:
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "messages: at least one message is required", "")
		return
	}
	var tools []string
	for _, t := range req.Tools {
		tools = append(tools, t.Name)
	}
	forced := ""
	if req.ToolChoice != nil {
		switch req.ToolChoice.Type {
		case "any":
			forced = "*"
		case "tool":
			forced = req.ToolChoice.Name
		case "none":
			forced = "none"
		}
	}
	a := decide(s.currentReply(), lastRole, lastText, tools, forced, false, req.MaxTokens)
	inTok := countTokens(inText.String())
	outTok := countTokens(a.Text + " " + a.ToolArgs)
	id := fmt.Sprintf("msg_sim%06d", n)
	toolID := fmt.Sprintf("toolu_sim%06d", n)
	stop := "end_turn"
	switch {
	case a.ToolName != "":
		stop = "tool_use"
	case a.Truncated:
		stop = "max_tokens"
	}
	usage := map[string]any{
		"input_tokens": inTok, "output_tokens": outTok,
		"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard",
	}

	if !req.Stream {
		var content []any
		if a.ToolName != "" {
			content = append(content, map[string]any{"type": "tool_use", "id": toolID, "name": a.ToolName, "input": json.RawMessage(a.ToolArgs)})
		} else {
			content = append(content, map[string]any{"type": "text", "text": a.Text})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": content,
			"stop_reason": stop, "stop_sequence": nil, "usage": usage,
		})
		return
	}
	s.runStream(w, r, f, familyAnthropic, func(e *sseWriter) {
		ev := func(name string, v any) {
			b, _ := json.Marshal(v)
			e.event(name, b)
		}
		ev("message_start", map[string]any{"type": "message_start", "message": map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
			"stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": inTok, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"},
		}})
		if a.ToolName != "" {
			ev("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
				"content_block": map[string]any{"type": "tool_use", "id": toolID, "name": a.ToolName, "input": map[string]any{}}})
			ev("ping", map[string]any{"type": "ping"})
			for _, p := range splitN(a.ToolArgs, 3) {
				ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
					"delta": map[string]any{"type": "input_json_delta", "partial_json": p}})
			}
		} else {
			ev("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
				"content_block": map[string]any{"type": "text", "text": ""}})
			ev("ping", map[string]any{"type": "ping"})
			for _, p := range pieces(a.Text) {
				ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
					"delta": map[string]any{"type": "text_delta", "text": p}})
			}
		}
		ev("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		ev("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": outTok}})
		ev("message_stop", map[string]any{"type": "message_stop"})
	})
}

func (s *Sim) serveAnthropicModels(w http.ResponseWriter, r *http.Request) {
	if !s.keyAccepted(anthropicAuth(r)) {
		writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key", "")
		return
	}
	data := make([]any, 0, len(s.p.Models))
	for _, m := range s.p.Models {
		data = append(data, map[string]any{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"})
	}
	first, last := "", ""
	if len(s.p.Models) > 0 {
		first, last = s.p.Models[0], s.p.Models[len(s.p.Models)-1]
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "has_more": false, "first_id": first, "last_id": last})
}

// anthropicAuth is the credential of an Anthropic request: x-api-key, or a bearer token
// (the SDK sends its API key that way).
func anthropicAuth(r *http.Request) string {
	if k := r.Header.Get("x-api-key"); k != "" {
		return k
	}
	return openAIAuth(r)
}
