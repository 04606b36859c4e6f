package translate

import (
	"encoding/json"
	"time"
)

// Event is one server-sent event.
type Event struct {
	Name string
	Data []byte
}

// StreamTranslator converts a provider's events into the caller's format.
type StreamTranslator interface {
	// Feed converts one provider event, appending the caller's events to dst.
	Feed(dst []Event, ev Event) ([]Event, error)
	// Usage is the usage seen so far.
	Usage() Usage
}

// AnthropicToOpenAIStream turns Anthropic message events into OpenAI chat chunks.
type AnthropicToOpenAIStream struct {
	IncludeUsage bool
	Now          time.Time

	id, model string
	usage     Usage
	finish    string
	toolIndex map[int]int
	nextTool  int
}

func (s *AnthropicToOpenAIStream) chunk(delta any, finish any) Event {
	c := map[string]any{
		"id": s.id, "object": "chat.completion.chunk", "created": s.Now.Unix(), "model": s.model,
		"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}},
	}
	b, _ := json.Marshal(c)
	return Event{Data: b}
}

// Usage is the usage seen so far.
func (s *AnthropicToOpenAIStream) Usage() Usage { return s.usage }

// Feed converts one Anthropic event.
func (s *AnthropicToOpenAIStream) Feed(dst []Event, ev Event) ([]Event, error) {
	var e struct {
		Type    string `json:"type"`
		Index   int    `json:"index"`
		Message struct {
			ID    string `json:"id"`
			Model string `json:"model"`
			Usage struct {
				InputTokens              int64 `json:"input_tokens"`
				OutputTokens             int64 `json:"output_tokens"`
				CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
				CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
			} `json:"usage"`
		} `json:"message"`
		ContentBlock anBlock `json:"content_block"`
		Delta        struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			PartialJSON string `json:"partial_json"`
			StopReason  string `json:"stop_reason"`
		} `json:"delta"`
		Usage *struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		return dst, ErrBadBody
	}
	switch e.Type {
	case "message_start":
		s.id, s.model = e.Message.ID, e.Message.Model
		u := e.Message.Usage
		s.usage.Input = u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
		s.usage.Output = u.OutputTokens
		dst = append(dst, s.chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	case "content_block_start":
		if e.ContentBlock.Type == "tool_use" {
			if s.toolIndex == nil {
				s.toolIndex = map[int]int{}
			}
			ti := s.nextTool
			s.nextTool++
			s.toolIndex[e.Index] = ti
			dst = append(dst, s.chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": ti, "id": e.ContentBlock.ID, "type": "function",
				"function": map[string]any{"name": e.ContentBlock.Name, "arguments": ""},
			}}}, nil))
		} else if e.ContentBlock.Type == "text" && e.ContentBlock.Text != "" {
			dst = append(dst, s.chunk(map[string]any{"content": e.ContentBlock.Text}, nil))
		}
	case "content_block_delta":
		switch e.Delta.Type {
		case "text_delta":
			dst = append(dst, s.chunk(map[string]any{"content": e.Delta.Text}, nil))
		case "input_json_delta":
			dst = append(dst, s.chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": s.toolIndex[e.Index], "function": map[string]any{"arguments": e.Delta.PartialJSON},
			}}}, nil))
		}
	case "message_delta":
		if e.Usage != nil {
			s.usage.Output = e.Usage.OutputTokens
			if e.Usage.InputTokens > 0 {
				s.usage.Input = e.Usage.InputTokens
			}
		}
		s.finish = StopToOpenAI(e.Delta.StopReason)
		dst = append(dst, s.chunk(map[string]any{}, s.finish))
	case "message_stop":
		if s.IncludeUsage {
			b, _ := json.Marshal(map[string]any{
				"id": s.id, "object": "chat.completion.chunk", "created": s.Now.Unix(), "model": s.model, "choices": []any{},
				"usage": map[string]any{"prompt_tokens": s.usage.Input, "completion_tokens": s.usage.Output, "total_tokens": s.usage.Input + s.usage.Output},
			})
			dst = append(dst, Event{Data: b})
		}
		dst = append(dst, Event{Data: []byte("[DONE]")})
	case "error":
		var ae struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e.Error, &ae)
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": ae.Message, "type": "server_error", "param": nil, "code": ae.Type}})
		dst = append(dst, Event{Data: b})
	}
	return dst, nil
}

// OpenAIToAnthropicStream turns OpenAI chat chunks into Anthropic message events.
type OpenAIToAnthropicStream struct {
	started   bool
	open      string // "" none, "text", "tool"
	index     int
	toolBlock map[int]int
	stop      string
	usage     Usage
	id, model string
}

// Usage is the usage seen so far.
func (s *OpenAIToAnthropicStream) Usage() Usage { return s.usage }

func anEvent(name string, v any) Event {
	b, _ := json.Marshal(v)
	return Event{Name: name, Data: b}
}

func (s *OpenAIToAnthropicStream) closeBlock(dst []Event) []Event {
	if s.open == "" {
		return dst
	}
	dst = append(dst, anEvent("content_block_stop", map[string]any{"type": "content_block_stop", "index": s.index}))
	s.open = ""
	s.index++
	return dst
}

// Feed converts one OpenAI chunk.
func (s *OpenAIToAnthropicStream) Feed(dst []Event, ev Event) ([]Event, error) {
	if string(ev.Data) == "[DONE]" {
		if !s.started {
			dst = s.start(dst)
		}
		dst = s.closeBlock(dst)
		if s.stop == "" {
			s.stop = "end_turn"
		}
		dst = append(dst, anEvent("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": s.stop, "stop_sequence": nil},
			"usage": map[string]any{"input_tokens": s.usage.Input, "output_tokens": s.usage.Output}}))
		dst = append(dst, anEvent("message_stop", map[string]any{"type": "message_stop"}))
		return dst, nil
	}
	var c struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			Delta struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					Index    int    `json:"index"`
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ev.Data, &c); err != nil {
		return dst, ErrBadBody
	}
	if c.Error != nil {
		return append(dst, anEvent("error", map[string]any{"type": "error", "error": map[string]any{"type": "api_error", "message": c.Error.Message}})), nil
	}
	if c.ID != "" {
		s.id, s.model = c.ID, c.Model
	}
	if !s.started {
		dst = s.start(dst)
	}
	if c.Usage != nil {
		s.usage = Usage{Input: c.Usage.PromptTokens, Output: c.Usage.CompletionTokens}
	}
	for _, ch := range c.Choices {
		if t := ch.Delta.Content; t != nil && *t != "" {
			if s.open != "text" {
				dst = s.closeBlock(dst)
				dst = append(dst, anEvent("content_block_start", map[string]any{"type": "content_block_start", "index": s.index,
					"content_block": map[string]any{"type": "text", "text": ""}}))
				s.open = "text"
			}
			dst = append(dst, anEvent("content_block_delta", map[string]any{"type": "content_block_delta", "index": s.index,
				"delta": map[string]any{"type": "text_delta", "text": *t}}))
		}
		for _, tc := range ch.Delta.ToolCalls {
			if tc.ID != "" {
				dst = s.closeBlock(dst)
				dst = append(dst, anEvent("content_block_start", map[string]any{"type": "content_block_start", "index": s.index,
					"content_block": map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Function.Name, "input": map[string]any{}}}))
				s.open = "tool"
			}
			if tc.Function.Arguments != "" {
				dst = append(dst, anEvent("content_block_delta", map[string]any{"type": "content_block_delta", "index": s.index,
					"delta": map[string]any{"type": "input_json_delta", "partial_json": tc.Function.Arguments}}))
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.stop = FinishToAnthropic(*ch.FinishReason)
		}
	}
	return dst, nil
}

func (s *OpenAIToAnthropicStream) start(dst []Event) []Event {
	s.started = true
	return append(dst, anEvent("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": s.id, "type": "message", "role": "assistant", "model": s.model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": map[string]any{"input_tokens": 0, "output_tokens": 0},
	}}))
}
