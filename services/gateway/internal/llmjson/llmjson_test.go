package llmjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

func tm() *engine.TokenMap {
	return engine.NewTokenMap([]engine.TokenMapEntry{
		{Placeholder: "⟨EMAIL_ADDRESS_1⟩", Original: "jane.doe@example.com", EntityType: "EMAIL_ADDRESS"},
		{Placeholder: "⟨PERSON_1⟩", Original: `Jane "JD" Doe`, EntityType: "PERSON"},
	})
}

func TestParse_ReadsModelStreamMaxTokensAndPromptMetadata(t *testing.T) {
	r, err := Parse(OpenAIChat, []byte(`{"model":"gpt-4o","stream":true,"max_completion_tokens":55,"metadata":{"bulwark_prompt":"bot@3"},
		"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi there"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "gpt-4o" || !r.Stream || r.MaxTokens != 55 || r.PromptRef != "bot@3" {
		t.Fatalf("parsed %+v", r)
	}
	var texts []string
	for _, s := range r.Segments() {
		texts = append(texts, s.ID+"="+s.Text)
	}
	want := "messages.0.content=be brief messages.1.content.0.text=hi there"
	if got := strings.Join(texts, " "); got != want {
		t.Fatalf("segments %q, want %q", got, want)
	}
}

func TestParse_RejectsBodiesThatAreNotRequests(t *testing.T) {
	for name, body := range map[string]string{
		"not json": `{`, "array": `[]`, "no model": `{"messages":[]}`, "model not string": `{"model":1,"messages":[]}`,
		"no messages": `{"model":"m"}`, "stream not bool": `{"model":"m","messages":[],"stream":"yes"}`,
	} {
		if _, err := Parse(OpenAIChat, []byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Parse(AnthropicMessages, []byte(`{"model":"m","messages":[]}`)); err == nil {
		t.Error("anthropic request without max_tokens accepted")
	}
}

func TestRewrite_ReplacesTextsKeepsUnknownFieldsAndAddsSystemPrompt(t *testing.T) {
	r, err := Parse(AnthropicMessages, []byte(`{"model":"claude","max_tokens":10,"system":"you help","x_custom":{"a":1},
		"messages":[{"role":"user","content":"mail jane.doe@example.com"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"send","input":{"name":"Jane"}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	red := map[string]string{}
	for _, s := range r.Segments() {
		red[s.ID] = strings.ReplaceAll(strings.ReplaceAll(s.Text, "jane.doe@example.com", "⟨EMAIL_ADDRESS_1⟩"), "Jane", "⟨PERSON_1⟩")
	}
	out, err := r.Rewrite(red, "Registered prompt.")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		System   string          `json:"system"`
		XCustom  json.RawMessage `json:"x_custom"`
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.System != "Registered prompt.\n\nyou help" {
		t.Fatalf("system = %q", got.System)
	}
	if string(got.XCustom) != `{"a":1}` {
		t.Fatalf("unknown field changed: %s", got.XCustom)
	}
	if strings.Contains(string(out), "jane.doe") || strings.Contains(string(out), `"Jane"`) {
		t.Fatalf("original left in body: %s", out)
	}
	if !strings.Contains(string(got.Messages[1].Content), `"name":"send"`) {
		t.Fatalf("tool name (structure) was rewritten: %s", got.Messages[1].Content)
	}
}

func TestRewrite_UnchangedBodyIsReturnedAsIs(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`)
	r, err := Parse(OpenAIChat, body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Rewrite(map[string]string{"messages.0.content": "hello"}, "")
	if err != nil || string(out) != string(body) {
		t.Fatalf("rewrite = %s, %v", out, err)
	}
}

func TestRestoreJSON_RestoresStringsAndJSONInsideStrings(t *testing.T) {
	body := `{"choices":[{"message":{"content":"Hi ⟨PERSON_1⟩ at \u27e8EMAIL_ADDRESS_1\u27e9","tool_calls":[{"function":{"arguments":"{\"to\":\"⟨PERSON_1⟩\"}"}}]}}]}`
	out, n := RestoreJSON([]byte(body), tm())
	if n != 3 {
		t.Fatalf("restored %d, want 3: %s", n, out)
	}
	var got struct {
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					Function struct {
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("restored body is not JSON: %v: %s", err, out)
	}
	m := got.Choices[0].Message
	if m.Content != `Hi Jane "JD" Doe at jane.doe@example.com` {
		t.Fatalf("content = %q", m.Content)
	}
	var args map[string]string
	if err := json.Unmarshal([]byte(m.ToolCalls[0].Function.Arguments), &args); err != nil || args["to"] != `Jane "JD" Doe` {
		t.Fatalf("arguments = %q (%v)", m.ToolCalls[0].Function.Arguments, err)
	}
}

// openAIStream renders text as OpenAI chunks cut at the given byte positions.
func openAIStream(text string, cuts []int) []Event {
	var evs []Event
	prev := 0
	emit := func(s string) {
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": s}, "finish_reason": nil}}})
		evs = append(evs, Event{Data: b})
	}
	for _, c := range cuts {
		// providers cut deltas at character boundaries (JSON strings hold whole characters)
		if c > prev && c < len(text) && utf8.RuneStart(text[c]) {
			emit(text[prev:c])
			prev = c
		}
	}
	emit(text[prev:])
	b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	evs = append(evs, Event{Data: b}, Event{Data: []byte("[DONE]")})
	return evs
}

func collectOpenAI(t testing.TB, evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		if string(e.Data) == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(e.Data, &c); err != nil {
			t.Fatalf("event not JSON: %s", e.Data)
		}
		for _, ch := range c.Choices {
			b.WriteString(ch.Delta.Content)
		}
	}
	return b.String()
}

func TestStreamRestorer_OpenAIPlaceholderSplitAcrossChunksIsRestoredWhole(t *testing.T) {
	text := "Write to ⟨EMAIL_ADDRESS_1⟩ for ⟨PERSON_1⟩."
	// cut just after an opening bracket, inside a type name and inside a number
	in := openAIStream(text, []int{10, 12, 20, 31, 33})
	s := NewStreamRestorer(OpenAIChat, tm(), false)
	var out []Event
	for _, e := range in {
		out = append(out, s.Event(e)...)
	}
	if got := collectOpenAI(t, out); got != `Write to jane.doe@example.com for Jane "JD" Doe.` {
		t.Fatalf("restored stream = %q", got)
	}
	if string(out[len(out)-1].Data) != "[DONE]" {
		t.Fatal("[DONE] is not last")
	}
}

func TestStreamRestorer_AnthropicFlushesHeldTextBeforeBlockStop(t *testing.T) {
	s := NewStreamRestorer(AnthropicMessages, tm(), false)
	var out []Event
	for _, e := range []Event{
		{Name: "content_block_start", Data: []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)},
		{Name: "content_block_delta", Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi ⟨PERS"}}`)},
		{Name: "content_block_delta", Data: []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ON_1⟩ ⟨"}}`)},
		{Name: "content_block_stop", Data: []byte(`{"type":"content_block_stop","index":0}`)},
	} {
		out = append(out, s.Event(e)...)
	}
	var text strings.Builder
	for _, e := range out {
		if e.Name != "content_block_delta" {
			continue
		}
		var d struct {
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		text.WriteString(d.Delta.Text)
	}
	if text.String() != `hi Jane "JD" Doe ⟨` {
		t.Fatalf("restored = %q", text.String())
	}
	if out[len(out)-1].Name != "content_block_stop" {
		t.Fatalf("last event = %s", out[len(out)-1].Name)
	}
}

func TestStreamRestorer_DropsUsageChunkTheClientDidNotAskFor(t *testing.T) {
	s := NewStreamRestorer(OpenAIChat, nil, true)
	if out := s.Event(Event{Data: []byte(`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}`)}); len(out) != 0 {
		t.Fatalf("usage chunk passed: %s", out[0].Data)
	}
	if out := s.Event(Event{Data: []byte(`{"choices":[{"index":0,"delta":{"content":"x"}}]}`)}); len(out) != 1 {
		t.Fatal("content chunk dropped")
	}
}

// FuzzStreamRestorer checks that any chunking of an answer restores to the
// same text as restoring it whole.
func FuzzStreamRestorer(f *testing.F) {
	f.Add("a ⟨EMAIL_ADDRESS_1⟩ b ⟨PERSON_1⟩", 3, 7)
	f.Add("⟨⟨PERSON_1⟩⟩ ⟨EMAIL_ADDRESS_2⟩", 1, 2)
	f.Add("plain text", 4, 1)
	f.Fuzz(func(t *testing.T, text string, a, b int) {
		if !json.Valid([]byte(`"`+strings.ReplaceAll(strings.ReplaceAll(text, `\`, `\\`), `"`, `\"`)+`"`)) || !utf8Valid(text) {
			return
		}
		step := a%7 + 1
		var cuts []int
		for i := b % 5; i < len(text); i += step {
			cuts = append(cuts, i)
		}
		s := NewStreamRestorer(OpenAIChat, tm(), false)
		var out []Event
		for _, e := range openAIStream(text, cuts) {
			out = append(out, s.Event(e)...)
		}
		want, _ := engine.Restore(text, tm())
		got := collectOpenAI(t, out)
		if got != want {
			t.Fatalf("chunked restore %q != whole restore %q", got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// FuzzParseRewrite feeds hostile bodies: Parse must not panic, and a rewrite
// that replaces every text must produce valid JSON.
func FuzzParseRewrite(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), "x")
	f.Add([]byte(`{"model":"m","max_tokens":3,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_use","input":{"a":["b"]}}]}]}`), "⟨X_1⟩")
	f.Fuzz(func(t *testing.T, body []byte, repl string) {
		for _, format := range []Format{OpenAIChat, AnthropicMessages, OpenAIEmbeddings} {
			r, err := Parse(format, body)
			if err != nil {
				continue
			}
			red := map[string]string{}
			for _, s := range r.Segments() {
				red[s.ID] = repl
			}
			out, err := r.Rewrite(red, "sys")
			if err != nil {
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("rewrite produced invalid JSON: %s", out)
			}
		}
	})
}

func TestStreamRestorer_EventsWithoutPlaceholdersPassUnchanged(t *testing.T) {
	s := NewStreamRestorer(OpenAIChat, tm(), false)
	plain := []byte(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}`)
	if out := s.Event(Event{Data: plain}); len(out) != 1 || !bytes.Equal(out[0].Data, plain) {
		t.Fatalf("plain chunk rewritten: %s", out[0].Data)
	}
	// While a placeholder's start is held back, the next chunk is not passed as is.
	s.Event(Event{Data: []byte(`{"choices":[{"index":0,"delta":{"content":"to ⟨EMAIL_ADD"}}]}`)})
	out := s.Event(Event{Data: []byte(`{"choices":[{"index":0,"delta":{"content":"RESS_1⟩!"}}]}`)})
	if got := collectOpenAI(t, out); !strings.Contains(got, "jane.doe@example.com") {
		t.Fatalf("held placeholder not restored: %q", got)
	}
}
