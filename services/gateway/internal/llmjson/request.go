// Package llmjson reads and rewrites the JSON bodies of the OpenAI- and
// Anthropic-compatible APIs without decoding more than the gateway needs: the
// model, the stream flag, the token budget and the texts to redact. Everything
// else passes through as the client sent it. It also restores tokenized
// originals in answers, whole or streamed, across chunk boundaries.
package llmjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Format is the API family of a body.
type Format int

// Formats.
const (
	OpenAIChat Format = iota + 1
	AnthropicMessages
	OpenAIEmbeddings
)

// ErrInvalid reports a body that is not a request of its format. Its text never
// contains payload data.
var ErrInvalid = errors.New("invalid request body")

// Segment is one text of a request to redact, by a stable id.
type Segment struct {
	ID   string
	Text string
}

// Request is a parsed request body. Only the top level is split into fields;
// the texts are located in the message list, which is decoded generically so
// that unknown fields survive a rewrite.
type Request struct {
	format Format
	body   []byte
	top    map[string]json.RawMessage

	// Model requested.
	Model string
	// Stream is true when the client asked for server-sent events.
	Stream bool
	// MaxTokens the answer may have (0 when not given).
	MaxTokens int64
	// IncludeUsage is true when an OpenAI client asked for the usage chunk.
	IncludeUsage bool
	// PromptRef is the "bulwark_prompt" metadata value, if any.
	PromptRef string
	// Metadata holds the string values of the "metadata" object.
	Metadata map[string]string

	messages []any // chat: decoded "messages"; embeddings: decoded "input" wrapped in a slice
	system   any   // anthropic "system"
	segs     []Segment
}

// skipKeys name fields whose strings are structure, not text, so they are neither redacted nor rewritten.
var skipKeys = map[string]bool{
	"role": true, "type": true, "id": true, "tool_call_id": true, "tool_use_id": true, "name": true,
	"media_type": true, "cache_control": true, "image_url": true, "source": true, "data": true,
	"signature": true, "format": true, "detail": true, "file_id": true, "input_audio": true, "citations": true,
}

// Parse reads body as a request of format f.
func Parse(f Format, body []byte) (*Request, error) {
	r := &Request{format: f, body: body}
	if err := json.Unmarshal(body, &r.top); err != nil || r.top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalid)
	}
	if raw, ok := r.top["model"]; ok {
		if err := json.Unmarshal(raw, &r.Model); err != nil {
			return nil, fmt.Errorf("%w: model is not a string", ErrInvalid)
		}
	}
	if r.Model == "" {
		return nil, fmt.Errorf("%w: model is required", ErrInvalid)
	}
	if raw, ok := r.top["stream"]; ok && f != OpenAIEmbeddings {
		if err := json.Unmarshal(raw, &r.Stream); err != nil {
			return nil, fmt.Errorf("%w: stream is not a boolean", ErrInvalid)
		}
	}
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		if raw, ok := r.top[k]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &r.MaxTokens); err != nil || r.MaxTokens < 0 {
				return nil, fmt.Errorf("%w: %s is not a positive integer", ErrInvalid, k)
			}
			break
		}
	}
	if raw, ok := r.top["stream_options"]; ok {
		var so struct {
			IncludeUsage bool `json:"include_usage"`
		}
		if json.Unmarshal(raw, &so) == nil {
			r.IncludeUsage = so.IncludeUsage
		}
	}
	if raw, ok := r.top["metadata"]; ok && string(raw) != "null" {
		var md map[string]any
		if err := json.Unmarshal(raw, &md); err != nil {
			return nil, fmt.Errorf("%w: metadata is not an object", ErrInvalid)
		}
		r.Metadata = make(map[string]string, len(md))
		for k, v := range md {
			if s, ok := v.(string); ok {
				r.Metadata[k] = s
			}
		}
		r.PromptRef = r.Metadata["bulwark_prompt"]
	}
	switch f {
	case OpenAIChat, AnthropicMessages:
		raw, ok := r.top["messages"]
		if !ok {
			return nil, fmt.Errorf("%w: messages is required", ErrInvalid)
		}
		if err := decodeAny(raw, &r.messages); err != nil || r.messages == nil {
			return nil, fmt.Errorf("%w: messages is not an array", ErrInvalid)
		}
		if f == AnthropicMessages {
			if raw, ok := r.top["system"]; ok {
				if err := decodeAny(raw, &r.system); err != nil {
					return nil, fmt.Errorf("%w: system is not valid", ErrInvalid)
				}
			}
			if r.MaxTokens == 0 {
				return nil, fmt.Errorf("%w: max_tokens is required", ErrInvalid)
			}
		}
	case OpenAIEmbeddings:
		raw, ok := r.top["input"]
		if !ok {
			return nil, fmt.Errorf("%w: input is required", ErrInvalid)
		}
		var in any
		if err := decodeAny(raw, &in); err != nil {
			return nil, fmt.Errorf("%w: input is not valid", ErrInvalid)
		}
		r.messages = []any{in}
	default:
		return nil, fmt.Errorf("%w: unknown format", ErrInvalid)
	}
	r.collect()
	return r, nil
}

func decodeAny(raw []byte, dst any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(dst)
}

// collect walks the texts in a fixed order; rewrite walks them in the same order.
func (r *Request) collect() {
	walkTexts(r.system, "system", false, func(id string, s string) string {
		r.segs = append(r.segs, Segment{ID: id, Text: s})
		return s
	})
	prefix := "messages."
	if r.format == OpenAIEmbeddings {
		prefix = "input."
	}
	for i, m := range r.messages {
		walkTexts(m, prefix+strconv.Itoa(i), false, func(id string, s string) string {
			r.segs = append(r.segs, Segment{ID: id, Text: s})
			return s
		})
	}
}

// walkTexts calls fn on every text string under v and stores what fn returns.
// Inside a tool input (free) every string is text, whatever its key.
func walkTexts(v any, path string, free bool, fn func(id, s string) string) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return x
		}
		return fn(path, x)
	case []any:
		for i := range x {
			x[i] = walkTexts(x[i], path+"."+strconv.Itoa(i), free, fn)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if !free && skipKeys[k] {
				continue
			}
			x[k] = walkTexts(x[k], path+"."+k, free || k == "input", fn)
		}
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// insertion sort: maps here have a handful of keys
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// Segments returns the texts to redact, in a stable order.
func (r *Request) Segments() []Segment { return r.segs }

// EstimatedInputTokens approximates the prompt's tokens (4 bytes a token, plus
// a few per message) for the reservation; settlement corrects it.
func (r *Request) EstimatedInputTokens() int64 {
	n := int64(0)
	for _, s := range r.segs {
		n += int64(len(s.Text)+3)/4 + 1
	}
	return n + int64(4*len(r.messages))
}

// Body returns the original body.
func (r *Request) Body() []byte { return r.body }

// Rewrite returns the body with redacted texts (by segment id) put in place, the
// registered system prompt (if any) placed first, and, for streamed OpenAI calls,
// usage requested so that the gateway can settle exact token counts. When nothing
// changes it returns the original bytes.
func (r *Request) Rewrite(redacted map[string]string, systemPrompt string) ([]byte, error) {
	changed := false
	for _, s := range r.segs {
		if t, ok := redacted[s.ID]; ok && t != s.Text {
			changed = true
			break
		}
	}
	needUsage := r.format == OpenAIChat && r.Stream && !r.IncludeUsage
	if !changed && systemPrompt == "" && !needUsage {
		return r.body, nil
	}
	top := make(map[string]json.RawMessage, len(r.top)+1)
	for k, v := range r.top {
		top[k] = v
	}
	replace := func(id, s string) string {
		if t, ok := redacted[id]; ok {
			return t
		}
		return s
	}
	var err error
	if changed || systemPrompt != "" {
		switch r.format {
		case OpenAIEmbeddings:
			in := walkTexts(r.messages[0], "input.0", false, replace)
			if top["input"], err = marshal(in); err != nil {
				return nil, err
			}
		default:
			msgs := make([]any, 0, len(r.messages)+1)
			if systemPrompt != "" && r.format == OpenAIChat {
				msgs = append(msgs, map[string]any{"role": "system", "content": systemPrompt})
			}
			for i, m := range r.messages {
				msgs = append(msgs, walkTexts(m, "messages."+strconv.Itoa(i), false, replace))
			}
			if top["messages"], err = marshal(msgs); err != nil {
				return nil, err
			}
			if r.format == AnthropicMessages {
				sys := walkTexts(r.system, "system", false, replace)
				if systemPrompt != "" {
					switch s := sys.(type) {
					case nil:
						sys = systemPrompt
					case string:
						sys = systemPrompt + "\n\n" + s
					case []any:
						sys = append([]any{map[string]any{"type": "text", "text": systemPrompt}}, s...)
					}
				}
				if sys != nil {
					if top["system"], err = marshal(sys); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if needUsage {
		var so map[string]any
		if raw, ok := top["stream_options"]; ok {
			_ = decodeAny(raw, &so)
		}
		if so == nil {
			so = map[string]any{}
		}
		so["include_usage"] = true
		if top["stream_options"], err = marshal(so); err != nil {
			return nil, err
		}
	}
	return marshal(top)
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// PromptRefFrom picks the prompt reference from the header, else the metadata.
func PromptRefFrom(header string, r *Request) string {
	if h := strings.TrimSpace(header); h != "" {
		return h
	}
	return r.PromptRef
}

// Format is the request's format.
func (r *Request) Format() Format { return r.format }
