package llmjson

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

// placeholder markers as they appear in raw JSON: the UTF-8 bracket, or its escape.
var (
	rawOpen     = []byte("⟨")
	escapedOpen = []byte(`\u27e8`)
)

func mayHoldPlaceholder(b []byte) bool {
	return bytes.Contains(b, rawOpen) || bytes.Contains(bytes.ToLower(b), escapedOpen)
}

// RestoreJSON puts the originals of tm back into every string of a JSON
// document. Strings that are themselves JSON (tool-call arguments) are restored
// inside, so an original with quotes keeps the inner JSON valid. Bodies without
// placeholders are returned as they are.
func RestoreJSON(body []byte, tm *engine.TokenMap) ([]byte, int) {
	if tm == nil || tm.Len() == 0 || !mayHoldPlaceholder(body) {
		return body, 0
	}
	var out bytes.Buffer
	out.Grow(len(body) + 64)
	total := 0
	i := 0
	for i < len(body) {
		q := bytes.IndexByte(body[i:], '"')
		if q < 0 {
			out.Write(body[i:])
			break
		}
		start := i + q
		end := stringEnd(body, start)
		if end < 0 { // not valid JSON: leave the rest alone
			out.Write(body[i:])
			break
		}
		out.Write(body[i:start])
		lit := body[start:end]
		if mayHoldPlaceholder(lit) {
			var s string
			if json.Unmarshal(lit, &s) == nil {
				r, n := restoreText(s, tm)
				if n > 0 {
					total += n
					enc, _ := marshal(r)
					out.Write(enc)
					i = end
					continue
				}
			}
		}
		out.Write(lit)
		i = end
	}
	return out.Bytes(), total
}

// restoreText restores s; when s is a JSON document it restores the strings inside.
func restoreText(s string, tm *engine.TokenMap) (string, int) {
	t := strings.TrimSpace(s)
	if len(t) > 1 && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
		b, n := RestoreJSON([]byte(s), tm)
		return string(b), n
	}
	return engine.Restore(s, tm)
}

// stringEnd returns the index just past the JSON string literal starting at
// body[start] == '"', or -1.
func stringEnd(body []byte, start int) int {
	for j := start + 1; j < len(body); j++ {
		switch body[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// Event is one server-sent event.
type Event struct {
	// Name is the SSE event name ("" for OpenAI data-only events).
	Name string
	// Data is the payload.
	Data []byte
}

// StreamRestorer restores originals in a streamed answer event by event. Each
// text channel (a choice's content, a tool call's arguments, an Anthropic
// content block) has its own engine.Restorer, so a placeholder split across
// any number of events is restored whole; held-back text is flushed into the
// event that ends the channel.
type StreamRestorer struct {
	format       Format
	tm           *engine.TokenMap
	dropUsage    bool
	chans        map[string]*channel
	order        []string
	restored     int
	usageDropped bool
}

type channel struct {
	r *engine.Restorer
	// for Anthropic: the delta type and field of the block
	deltaType, field string
	index            json.Number
}

// NewStreamRestorer returns a restorer for one stream. dropUsage removes the
// usage-only chunk that the gateway asked an OpenAI provider for, when the
// client did not ask for it.
func NewStreamRestorer(f Format, tm *engine.TokenMap, dropUsage bool) *StreamRestorer {
	return &StreamRestorer{format: f, tm: tm, dropUsage: dropUsage, chans: map[string]*channel{}}
}

// Restored counts the placeholders restored so far.
func (s *StreamRestorer) Restored() int {
	n := s.restored
	for _, c := range s.chans {
		n += c.r.Restored()
	}
	return n
}

func (s *StreamRestorer) active() bool { return s.tm != nil && s.tm.Len() > 0 }

// passThrough reports whether an event cannot change: it holds no
// placeholder (nor the start of one) and no channel holds text back. Most
// events of a stream are such, and skip decoding and encoding.
func (s *StreamRestorer) passThrough(data []byte) bool {
	if mayHoldPlaceholder(data) {
		return false
	}
	for _, c := range s.chans {
		if c.r.Holding() {
			return false
		}
	}
	return true
}

func (s *StreamRestorer) ch(key string) *channel {
	c, ok := s.chans[key]
	if !ok {
		c = &channel{r: engine.NewRestorer(s.tm)}
		s.chans[key] = c
		s.order = append(s.order, key)
	}
	return c
}

// Event takes one event from the provider and returns the events to send on.
func (s *StreamRestorer) Event(ev Event) []Event {
	if s.format == AnthropicMessages {
		if !s.active() {
			return []Event{ev}
		}
		return s.anthropic(ev)
	}
	return s.openai(ev)
}

func (s *StreamRestorer) openai(ev Event) []Event {
	data := bytes.TrimSpace(ev.Data)
	if string(data) == "[DONE]" {
		if tail := s.openaiTail(); tail != nil {
			return []Event{*tail, ev}
		}
		return []Event{ev}
	}
	isUsageChunk := s.dropUsage && bytes.Contains(data, []byte(`"usage":{`))
	if !isUsageChunk && (!s.active() || s.passThrough(data)) {
		return []Event{ev}
	}
	var chunk map[string]any
	if decodeAny(data, &chunk) != nil {
		return []Event{ev}
	}
	choices, _ := chunk["choices"].([]any)
	if isUsageChunk && len(choices) == 0 {
		s.usageDropped = true
		return nil
	}
	if !s.active() {
		return []Event{ev}
	}
	for _, c := range choices {
		choice, _ := c.(map[string]any)
		if choice == nil {
			continue
		}
		idx := numString(choice["index"])
		delta, _ := choice["delta"].(map[string]any)
		finished := choice["finish_reason"] != nil
		if delta != nil {
			if text, ok := delta["content"].(string); ok && text != "" {
				delta["content"] = s.ch("c:" + idx).r.Feed(text)
			}
			if tcs, ok := delta["tool_calls"].([]any); ok {
				for _, t := range tcs {
					tc, _ := t.(map[string]any)
					fn, _ := tc["function"].(map[string]any)
					if args, ok := fn["arguments"].(string); ok && args != "" {
						fn["arguments"] = s.ch("t:" + idx + ":" + numString(tc["index"])).r.Feed(args)
					}
				}
			}
		}
		if finished {
			if c, ok := s.chans["c:"+idx]; ok {
				if tail := c.r.Flush(); tail != "" {
					if delta == nil {
						delta = map[string]any{}
						choice["delta"] = delta
					}
					prev, _ := delta["content"].(string)
					delta["content"] = prev + tail
				}
			}
			for _, key := range s.order {
				if strings.HasPrefix(key, "t:"+idx+":") {
					if tail := s.chans[key].r.Flush(); tail != "" && delta != nil {
						tcIdx := strings.TrimPrefix(key, "t:"+idx+":")
						tcs, _ := delta["tool_calls"].([]any)
						delta["tool_calls"] = append(tcs, map[string]any{"index": json.Number(tcIdx), "function": map[string]any{"arguments": tail}})
					}
				}
			}
		}
	}
	out, err := marshal(chunk)
	if err != nil {
		return []Event{ev}
	}
	return []Event{{Name: ev.Name, Data: out}}
}

// openaiTail flushes channels a provider left open (no finish_reason) into one chunk.
func (s *StreamRestorer) openaiTail() *Event {
	var choices []any
	for _, key := range s.order {
		tail := s.chans[key].r.Flush()
		if tail == "" || !strings.HasPrefix(key, "c:") {
			continue
		}
		choices = append(choices, map[string]any{"index": json.Number(strings.TrimPrefix(key, "c:")), "delta": map[string]any{"content": tail}})
	}
	if len(choices) == 0 {
		return nil
	}
	out, err := marshal(map[string]any{"object": "chat.completion.chunk", "choices": choices})
	if err != nil {
		return nil
	}
	return &Event{Data: out}
}

func (s *StreamRestorer) anthropic(ev Event) []Event {
	switch ev.Name {
	case "content_block_delta":
		if s.passThrough(ev.Data) {
			return []Event{ev}
		}
		var m map[string]any
		if decodeAny(ev.Data, &m) != nil {
			return []Event{ev}
		}
		idx := numString(m["index"])
		delta, _ := m["delta"].(map[string]any)
		typ, _ := delta["type"].(string)
		field := ""
		switch typ {
		case "text_delta":
			field = "text"
		case "input_json_delta":
			field = "partial_json"
		case "thinking_delta":
			field = "thinking"
		default:
			return []Event{ev}
		}
		text, _ := delta[field].(string)
		c := s.ch("b:" + idx)
		c.deltaType, c.field, c.index = typ, field, json.Number(idx)
		delta[field] = c.r.Feed(text)
		out, err := marshal(m)
		if err != nil {
			return []Event{ev}
		}
		return []Event{{Name: ev.Name, Data: out}}
	case "content_block_stop":
		var m map[string]any
		if decodeAny(ev.Data, &m) != nil {
			return []Event{ev}
		}
		c, ok := s.chans["b:"+numString(m["index"])]
		if !ok {
			return []Event{ev}
		}
		tail := c.r.Flush()
		if tail == "" {
			return []Event{ev}
		}
		out, err := marshal(map[string]any{"type": "content_block_delta", "index": c.index,
			"delta": map[string]any{"type": c.deltaType, c.field: tail}})
		if err != nil {
			return []Event{ev}
		}
		return []Event{{Name: "content_block_delta", Data: out}, ev}
	case "content_block_start", "message_start":
		// A block may start with text already in it (rare); restore it whole.
		out, n := RestoreJSON(ev.Data, s.tm)
		s.restored += n
		return []Event{{Name: ev.Name, Data: out}}
	}
	return []Event{ev}
}

func numString(v any) string {
	switch n := v.(type) {
	case json.Number:
		return n.String()
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64)
	case string:
		return n
	}
	return "0"
}
