package translate

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func TestOpenAIToAnthropicRequest_MapsRolesToolsImagesAndChoices(t *testing.T) {
	in := `{"model":"x","messages":[
		{"role":"system","content":"s1"},{"role":"developer","content":[{"type":"text","text":"s2"}]},
		{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"not json"}}]},
		{"role":"tool","tool_call_id":"c1","content":"r1"},{"role":"tool","tool_call_id":"c2","content":"r2"}],
		"tools":[{"type":"function","function":{"name":"f","description":"d"}}],"tool_choice":{"type":"function","function":{"name":"f"}},
		"parallel_tool_calls":false,"max_completion_tokens":9,"stop":["a","b"],"user":"u1","stream":true,"stream_options":{"include_usage":true}}`
	out, inc, err := OpenAIToAnthropicRequest([]byte(in), "claude")
	if err != nil || !inc {
		t.Fatal(err, inc)
	}
	g := func(p string) gjson.Result { return gjson.GetBytes(out, p) }
	checks := map[string]any{
		"model": "claude", "system": "s1\n\ns2", "max_tokens": int64(9), "stop_sequences.1": "b", "metadata.user_id": "u1", "stream": true,
		"messages.0.content.1.source.type": "base64", "messages.0.content.1.source.media_type": "image/png", "messages.0.content.2.source.url": "https://x/y.png",
		"messages.1.content.0.type": "tool_use", "messages.1.content.0.input.a": int64(1), "messages.1.content.1.input": map[string]any{},
		"messages.2.role": "user", "messages.2.content.1.tool_use_id": "c2", "messages.2.content.0.content": "r1",
		"tools.0.input_schema.type": "object", "tool_choice.type": "tool", "tool_choice.name": "f", "tool_choice.disable_parallel_tool_use": true,
	}
	for p, want := range checks {
		got := g(p).Value()
		if f, ok := got.(float64); ok {
			got = int64(f)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s\n%s", p, gb, wb, out)
		}
	}
	if len(g("messages").Array()) != 3 {
		t.Fatalf("messages not merged: %s", out)
	}
}

func TestAnthropicToOpenAIRequest_MapsSystemToolResultsAndChoice(t *testing.T) {
	in := `{"model":"x","max_tokens":5,"system":"sys","stop_sequences":["z"],"stream":true,"metadata":{"user_id":"u"},
		"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},
		"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"t"},{"type":"tool_use","id":"u1","name":"f","input":{"k":"v"}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"u1","content":[{"type":"text","text":"res"}],"is_error":true},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"QQ=="}}]}]}`
	out, err := AnthropicToOpenAIRequest([]byte(in), "gpt")
	if err != nil {
		t.Fatal(err)
	}
	g := func(p string) string { return gjson.GetBytes(out, p).String() }
	for p, want := range map[string]string{
		"model": "gpt", "messages.0.content": "sys", "messages.1.content": "q", "messages.2.tool_calls.0.function.arguments": `{"k":"v"}`,
		"messages.3.role": "tool", "messages.3.content": "error: res", "messages.4.content.0.image_url.url": "data:image/jpeg;base64,QQ==",
		"tool_choice": "required", "parallel_tool_calls": "false", "stop.0": "z", "user": "u", "stream_options.include_usage": "true", "max_tokens": "5",
	} {
		if got := g(p); got != want {
			t.Errorf("%s = %q, want %q\n%s", p, got, want, out)
		}
	}
}

func TestResponses_TranslateContentStopReasonsAndUsage(t *testing.T) {
	an := `{"id":"m1","model":"c","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":2}}`
	out, u, err := AnthropicToOpenAIResponse([]byte(an), time.Unix(10, 0))
	if err != nil || u.Input != 5 || u.Output != 4 {
		t.Fatal(err, u)
	}
	if gjson.GetBytes(out, "choices.0.finish_reason").Str != "tool_calls" || gjson.GetBytes(out, "choices.0.message.content").Str != "hi" ||
		gjson.GetBytes(out, "choices.0.message.tool_calls.0.function.arguments").Str != `{"a":1}` {
		t.Fatalf("%s", out)
	}
	oa := `{"id":"c1","model":"g","choices":[{"message":{"content":null,"tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`
	out, u, err = OpenAIToAnthropicResponse([]byte(oa))
	if err != nil || u.Output != 2 || gjson.GetBytes(out, "stop_reason").Str != "max_tokens" || gjson.GetBytes(out, "content.0.type").Str != "tool_use" {
		t.Fatalf("%v %s", err, out)
	}
	for in, want := range map[string]string{"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls", "stop_sequence": "stop", "refusal": "content_filter"} {
		if StopToOpenAI(in) != want {
			t.Errorf("%s -> %s", in, StopToOpenAI(in))
		}
	}
}

func TestErrors_TranslateBothWays(t *testing.T) {
	a := ErrorToAnthropic(429, []byte(`{"error":{"message":"slow","type":"requests"}}`))
	if gjson.GetBytes(a, "error.type").Str != "rate_limit_error" || gjson.GetBytes(a, "error.message").Str != "slow" || gjson.GetBytes(a, "type").Str != "error" {
		t.Fatalf("%s", a)
	}
	o := ErrorToOpenAI(529, []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	if gjson.GetBytes(o, "error.type").Str != "server_error" || gjson.GetBytes(o, "error.message").Str != "Overloaded" {
		t.Fatalf("%s", o)
	}
}

func FuzzTranslate(f *testing.F) {
	f.Add([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"x","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":[1]}]}]}`))
	f.Add([]byte(`{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a"}]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if out, _, err := OpenAIToAnthropicRequest(b, "m"); err == nil && !json.Valid(out) {
			t.Fatalf("invalid output %s", out)
		}
		if out, err := AnthropicToOpenAIRequest(b, "m"); err == nil && !json.Valid(out) {
			t.Fatalf("invalid output %s", out)
		}
		_, _, _ = AnthropicToOpenAIResponse(b, time.Unix(0, 0))
		_, _, _ = OpenAIToAnthropicResponse(b)
		a := &AnthropicToOpenAIStream{}
		_, _ = a.Feed(nil, Event{Name: "x", Data: b})
		o := &OpenAIToAnthropicStream{}
		_, _ = o.Feed(nil, Event{Data: b})
		_ = ErrorToAnthropic(500, b)
		_ = ErrorToOpenAI(500, b)
	})
}
