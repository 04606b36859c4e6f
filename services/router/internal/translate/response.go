package translate

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Usage is a call's token count.
type Usage struct {
	Input  int64
	Output int64
}

// StopToOpenAI maps an Anthropic stop_reason to an OpenAI finish_reason.
func StopToOpenAI(s string) string {
	switch s {
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default:
		return "stop"
	}
}

// FinishToAnthropic maps an OpenAI finish_reason to an Anthropic stop_reason.
func FinishToAnthropic(s string) string {
	switch s {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	default:
		return "end_turn"
	}
}

type anResponse struct {
	ID         string    `json:"id"`
	Model      string    `json:"model"`
	Content    []anBlock `json:"content"`
	StopReason string    `json:"stop_reason"`
	Usage      struct {
		InputTokens              int64 `json:"input_tokens"`
		OutputTokens             int64 `json:"output_tokens"`
		CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	} `json:"usage"`
}

// AnthropicToOpenAIResponse converts an Anthropic message into an OpenAI chat completion.
func AnthropicToOpenAIResponse(body []byte, now time.Time) ([]byte, Usage, error) {
	var in anResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, Usage{}, fmt.Errorf("decode anthropic response: %w", ErrBadBody)
	}
	var text strings.Builder
	var calls []any
	for _, b := range in.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			args := string(b.Input)
			if args == "" {
				args = "{}"
			}
			calls = append(calls, map[string]any{"id": b.ID, "type": "function", "function": map[string]any{"name": b.Name, "arguments": args}})
		}
	}
	msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil}
	if text.Len() > 0 || len(calls) == 0 {
		msg["content"] = text.String()
	}
	if len(calls) > 0 {
		msg["tool_calls"] = calls
	}
	in1 := in.Usage.InputTokens + in.Usage.CacheCreationInputTokens + in.Usage.CacheReadInputTokens
	u := Usage{Input: in1, Output: in.Usage.OutputTokens}
	out, err := json.Marshal(map[string]any{
		"id": in.ID, "object": "chat.completion", "created": now.Unix(), "model": in.Model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": StopToOpenAI(in.StopReason)}},
		"usage": map[string]any{"prompt_tokens": u.Input, "completion_tokens": u.Output, "total_tokens": u.Input + u.Output,
			"prompt_tokens_details": map[string]any{"cached_tokens": in.Usage.CacheReadInputTokens}},
	})
	return out, u, err
}

type oaResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string      `json:"content"`
			Refusal   *string      `json:"refusal"`
			ToolCalls []oaToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
	} `json:"usage"`
}

// OpenAIToAnthropicResponse converts an OpenAI chat completion into an Anthropic message.
func OpenAIToAnthropicResponse(body []byte) ([]byte, Usage, error) {
	var in oaResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, Usage{}, fmt.Errorf("decode openai response: %w", ErrBadBody)
	}
	content := []anBlock{}
	stop := "end_turn"
	if len(in.Choices) > 0 {
		c := in.Choices[0]
		switch {
		case c.Message.Content != nil && *c.Message.Content != "":
			content = append(content, anBlock{Type: "text", Text: *c.Message.Content})
		case c.Message.Refusal != nil && *c.Message.Refusal != "":
			content = append(content, anBlock{Type: "text", Text: *c.Message.Refusal})
		}
		for _, tc := range c.Message.ToolCalls {
			input := json.RawMessage(tc.Function.Arguments)
			if !json.Valid(input) {
				input = json.RawMessage("{}")
			}
			content = append(content, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
		}
		stop = FinishToAnthropic(c.FinishReason)
	}
	u := Usage{Input: in.Usage.PromptTokens, Output: in.Usage.CompletionTokens}
	out, err := json.Marshal(map[string]any{
		"id": in.ID, "type": "message", "role": "assistant", "model": in.Model, "content": content,
		"stop_reason": stop, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": u.Input, "output_tokens": u.Output},
	})
	return out, u, err
}

// ErrorToAnthropic converts an OpenAI error body into an Anthropic one.
func ErrorToAnthropic(status int, body []byte) []byte {
	var in struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &in)
	msg := in.Error.Message
	if msg == "" {
		msg = "provider error"
	}
	out, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": AnthropicErrorType(status), "message": msg}})
	return out
}

// ErrorToOpenAI converts an Anthropic error body into an OpenAI one.
func ErrorToOpenAI(status int, body []byte) []byte {
	var in struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &in)
	msg := in.Error.Message
	if msg == "" {
		msg = "provider error"
	}
	typ, code := OpenAIErrorType(status)
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	out, _ := json.Marshal(map[string]any{"error": e})
	return out
}

// AnthropicErrorType is Anthropic's error type for an HTTP status.
func AnthropicErrorType(status int) string {
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
	case 529, 503:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// OpenAIErrorType is OpenAI's error type and code for an HTTP status.
func OpenAIErrorType(status int) (typ, code string) {
	switch {
	case status == 401:
		return "invalid_request_error", "invalid_api_key"
	case status == 429:
		return "requests", "rate_limit_exceeded"
	case status >= 500:
		return "server_error", ""
	}
	return "invalid_request_error", ""
}
