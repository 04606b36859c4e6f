package sim

import (
	"encoding/json"
	"strings"
)

// answer is what the simulator decided to say, independent of wire format.
type answer struct {
	Text     string
	ToolName string
	ToolArgs string // JSON object
	// Truncated is set when max tokens cut the answer short.
	Truncated bool
}

// decide builds the deterministic answer. lastRole/lastText describe the last message;
// tools are the declared tool names; forced is a tool the caller requires ("" none,
// "*" any).
func decide(reply, lastRole, lastText string, tools []string, forced string, jsonMode bool, maxTokens int) answer {
	var a answer
	switch {
	case len(tools) > 0 && forced != "" && forced != "none":
		name := forced
		if forced == "*" {
			name = mentionedTool(lastText, tools)
			if name == "" {
				name = tools[0]
			}
		}
		a.ToolName = name
	case len(tools) > 0 && forced != "none" && lastRole == "user":
		a.ToolName = mentionedTool(lastText, tools)
	}
	if a.ToolName != "" {
		args, _ := json.Marshal(map[string]string{"input": lastText})
		a.ToolArgs = string(args)
		return a
	}
	text := reply
	if text == "" {
		switch lastRole {
		case "tool":
			text = "tool result: " + lastText
		default:
			text = lastText
		}
	}
	if jsonMode {
		b, _ := json.Marshal(map[string]string{"echo": text})
		text = string(b)
	}
	if maxTokens > 0 {
		words := strings.Fields(text)
		if len(words) > maxTokens {
			text = strings.Join(words[:maxTokens], " ")
			a.Truncated = true
		}
	}
	a.Text = text
	return a
}

// mentionedTool returns the first declared tool whose name appears in text.
func mentionedTool(text string, tools []string) string {
	for _, t := range tools {
		if t != "" && strings.Contains(text, t) {
			return t
		}
	}
	return ""
}

// countTokens is the simulator's deterministic token count: whitespace-separated words, at least 1.
func countTokens(s string) int {
	n := len(strings.Fields(s))
	if n == 0 {
		return 1
	}
	return n
}

// pieces splits text into stream deltas that concatenate back to text exactly.
func pieces(text string) []string {
	if text == "" {
		return nil
	}
	var out []string
	start := 0
	inSpace := false
	for i, r := range text {
		if r == ' ' {
			inSpace = true
			continue
		}
		if inSpace && i > start {
			out = append(out, text[start:i])
			start = i
		}
		inSpace = false
	}
	out = append(out, text[start:])
	return out
}

// contentText extracts text from an OpenAI or Anthropic content value: a string, or
// an array of parts/blocks whose text (and tool_result content) is joined.
func contentText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		t := p.Text
		if p.Type == "tool_result" {
			t = contentText(p.Content)
		}
		if t == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t)
	}
	return b.String()
}
