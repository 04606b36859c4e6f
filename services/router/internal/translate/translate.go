// Package translate converts calls between the OpenAI chat-completions format and
// the Anthropic messages format: requests, answers, error bodies and streamed
// events. It is used only when the caller's format differs from the provider's;
// when they agree the router passes bodies through untouched.
package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrBadBody is returned for a body that is not valid in its stated format.
var ErrBadBody = errors.New("bad request body")

// DefaultMaxTokens is sent to Anthropic when an OpenAI call sets no limit (Anthropic requires one).
const DefaultMaxTokens = 4096

// ---- OpenAI shapes (only what translation needs) ----

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content,omitempty"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []oaToolCall    `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

type oaRequest struct {
	Model               string          `json:"model"`
	Messages            []oaMessage     `json:"messages"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options,omitempty"`
	Tools             []oaTool        `json:"tools,omitempty"`
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	User              string          `json:"user,omitempty"`
}

type oaContentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url,omitempty"`
}

// ---- Anthropic shapes ----

type anBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
	Source    *anSource       `json:"source,omitempty"`
}

type anSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anMessage struct {
	Role    string    `json:"role"`
	Content []anBlock `json:"content"`
}

type anTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anRequest struct {
	Model         string          `json:"model"`
	MaxTokens     int             `json:"max_tokens"`
	System        json.RawMessage `json:"system,omitempty"`
	Messages      []anMessage     `json:"messages"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Tools         []anTool        `json:"tools,omitempty"`
	ToolChoice    *anToolChoice   `json:"tool_choice,omitempty"`
	Metadata      *struct {
		UserID string `json:"user_id,omitempty"`
	} `json:"metadata,omitempty"`
}

// anInMessage reads Anthropic content that may be a string or blocks.
type anInMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anInRequest struct {
	anRequest
	Messages []anInMessage `json:"messages"`
}

// textOf returns a string content, or the joined text of text parts/blocks.
func textOf(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// OpenAIToAnthropicRequest converts an OpenAI chat request into an Anthropic messages
// request for model. It reports whether the caller asked for usage in a stream.
func OpenAIToAnthropicRequest(body []byte, model string) (out []byte, includeUsage bool, err error) {
	var in oaRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, false, fmt.Errorf("decode openai request: %w", ErrBadBody)
	}
	r := anRequest{Model: model, Temperature: in.Temperature, TopP: in.TopP, Stream: in.Stream}
	switch {
	case in.MaxCompletionTokens != nil:
		r.MaxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil:
		r.MaxTokens = *in.MaxTokens
	default:
		r.MaxTokens = DefaultMaxTokens
	}
	if in.StreamOptions != nil {
		includeUsage = in.StreamOptions.IncludeUsage
	}
	if len(in.Stop) > 0 {
		var one string
		if json.Unmarshal(in.Stop, &one) == nil {
			r.StopSequences = []string{one}
		} else if json.Unmarshal(in.Stop, &r.StopSequences) != nil {
			return nil, false, fmt.Errorf("decode stop: %w", ErrBadBody)
		}
	}
	var system []string
	push := func(role string, blocks ...anBlock) {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == role {
			r.Messages[n-1].Content = append(r.Messages[n-1].Content, blocks...)
			return
		}
		r.Messages = append(r.Messages, anMessage{Role: role, Content: blocks})
	}
	for _, m := range in.Messages {
		switch m.Role {
		case "system", "developer":
			system = append(system, textOf(m.Content))
		case "user":
			blocks, err := userBlocks(m.Content)
			if err != nil {
				return nil, false, err
			}
			push("user", blocks...)
		case "assistant":
			var blocks []anBlock
			if t := textOf(m.Content); t != "" {
				blocks = append(blocks, anBlock{Type: "text", Text: t})
			}
			for _, tc := range m.ToolCalls {
				input := json.RawMessage(tc.Function.Arguments)
				if !json.Valid(input) || len(input) == 0 {
					input = json.RawMessage("{}")
				}
				blocks = append(blocks, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
			if len(blocks) == 0 {
				blocks = append(blocks, anBlock{Type: "text", Text: ""})
			}
			push("assistant", blocks...)
		case "tool":
			c, _ := json.Marshal(textOf(m.Content))
			push("user", anBlock{Type: "tool_result", ToolUseID: m.ToolCallID, Content: c})
		default:
			return nil, false, fmt.Errorf("message role %q: %w", m.Role, ErrBadBody)
		}
	}
	if len(system) > 0 {
		r.System, _ = json.Marshal(strings.Join(system, "\n\n"))
	}
	for _, t := range in.Tools {
		schema := t.Function.Parameters
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		r.Tools = append(r.Tools, anTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if len(in.ToolChoice) > 0 && len(in.Tools) > 0 {
		var s string
		tc := &anToolChoice{}
		if json.Unmarshal(in.ToolChoice, &s) == nil {
			switch s {
			case "auto":
				tc.Type = "auto"
			case "required":
				tc.Type = "any"
			case "none":
				tc.Type = "none"
			}
		} else {
			var obj struct {
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(in.ToolChoice, &obj) == nil && obj.Function.Name != "" {
				tc.Type, tc.Name = "tool", obj.Function.Name
			}
		}
		if tc.Type != "" {
			r.ToolChoice = tc
		}
	}
	if in.ParallelToolCalls != nil && !*in.ParallelToolCalls && len(in.Tools) > 0 {
		if r.ToolChoice == nil {
			r.ToolChoice = &anToolChoice{Type: "auto"}
		}
		r.ToolChoice.DisableParallelToolUse = true
	}
	if in.User != "" {
		r.Metadata = &struct {
			UserID string `json:"user_id,omitempty"`
		}{UserID: in.User}
	}
	out, err = json.Marshal(r)
	return out, includeUsage, err
}

func userBlocks(raw json.RawMessage) ([]anBlock, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []anBlock{{Type: "text", Text: s}}, nil
	}
	var parts []oaContentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, fmt.Errorf("decode user content: %w", ErrBadBody)
	}
	var out []anBlock
	for _, p := range parts {
		switch p.Type {
		case "text":
			out = append(out, anBlock{Type: "text", Text: p.Text})
		case "image_url":
			if p.ImageURL == nil {
				continue
			}
			out = append(out, anBlock{Type: "image", Source: imageSource(p.ImageURL.URL)})
		}
	}
	return out, nil
}

// imageSource turns an OpenAI image URL (possibly a data: URL) into an Anthropic image source.
func imageSource(u string) *anSource {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		if mt, ok2 := strings.CutSuffix(meta, ";base64"); ok && ok2 {
			return &anSource{Type: "base64", MediaType: mt, Data: data}
		}
	}
	return &anSource{Type: "url", URL: u}
}

// AnthropicToOpenAIRequest converts an Anthropic messages request into an OpenAI chat
// request for model. Streams ask for usage so the router can report it.
func AnthropicToOpenAIRequest(body []byte, model string) ([]byte, error) {
	var in anInRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("decode anthropic request: %w", ErrBadBody)
	}
	out := map[string]any{"model": model}
	var msgs []any
	if sys := textOf(in.System); sys != "" {
		msgs = append(msgs, map[string]any{"role": "system", "content": sys})
	}
	for _, m := range in.Messages {
		var blocks []anBlock
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			blocks = []anBlock{{Type: "text", Text: s}}
		} else if err := json.Unmarshal(m.Content, &blocks); err != nil {
			return nil, fmt.Errorf("decode message content: %w", ErrBadBody)
		}
		switch m.Role {
		case "user":
			var parts []any
			onlyText := true
			for _, b := range blocks {
				switch b.Type {
				case "text":
					parts = append(parts, map[string]any{"type": "text", "text": b.Text})
				case "image":
					if b.Source == nil {
						continue
					}
					onlyText = false
					u := b.Source.URL
					if b.Source.Type == "base64" {
						u = "data:" + b.Source.MediaType + ";base64," + b.Source.Data
					}
					parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]any{"url": u}})
				case "tool_result":
					c := textOf(b.Content)
					if b.IsError {
						c = "error: " + c
					}
					msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": b.ToolUseID, "content": c})
				}
			}
			if len(parts) == 0 {
				continue
			}
			if onlyText {
				var sb strings.Builder
				for _, p := range parts {
					sb.WriteString(p.(map[string]any)["text"].(string))
				}
				msgs = append(msgs, map[string]any{"role": "user", "content": sb.String()})
			} else {
				msgs = append(msgs, map[string]any{"role": "user", "content": parts})
			}
		case "assistant":
			msg := map[string]any{"role": "assistant"}
			var text strings.Builder
			var calls []any
			for _, b := range blocks {
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
			if text.Len() > 0 || len(calls) == 0 {
				msg["content"] = text.String()
			} else {
				msg["content"] = nil
			}
			if len(calls) > 0 {
				msg["tool_calls"] = calls
			}
			msgs = append(msgs, msg)
		default:
			return nil, fmt.Errorf("message role %q: %w", m.Role, ErrBadBody)
		}
	}
	out["messages"] = msgs
	if in.MaxTokens > 0 {
		out["max_tokens"] = in.MaxTokens
	}
	if in.Temperature != nil {
		out["temperature"] = *in.Temperature
	}
	if in.TopP != nil {
		out["top_p"] = *in.TopP
	}
	if len(in.StopSequences) > 0 {
		out["stop"] = in.StopSequences
	}
	if in.Stream {
		out["stream"] = true
		out["stream_options"] = map[string]any{"include_usage": true}
	}
	if len(in.Tools) > 0 {
		var tools []any
		for _, t := range in.Tools {
			fn := map[string]any{"name": t.Name, "parameters": t.InputSchema}
			if t.Description != "" {
				fn["description"] = t.Description
			}
			tools = append(tools, map[string]any{"type": "function", "function": fn})
		}
		out["tools"] = tools
		if tc := in.ToolChoice; tc != nil {
			switch tc.Type {
			case "auto":
				out["tool_choice"] = "auto"
			case "any":
				out["tool_choice"] = "required"
			case "none":
				out["tool_choice"] = "none"
			case "tool":
				out["tool_choice"] = map[string]any{"type": "function", "function": map[string]any{"name": tc.Name}}
			}
			if tc.DisableParallelToolUse {
				out["parallel_tool_calls"] = false
			}
		}
	}
	if in.Metadata != nil && in.Metadata.UserID != "" {
		out["user"] = in.Metadata.UserID
	}
	return json.Marshal(out)
}
