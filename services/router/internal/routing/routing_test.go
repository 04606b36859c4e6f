package routing_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func TestComplete_SameFormatPassesUnknownFieldsAndRewritesOnlyTheModel(t *testing.T) {
	e := newEnv(t)
	call := chat("gpt", "hello world")
	call.Body = oaBody("gpt", "hello world", `,"x_future":{"nested":[1,2,3]},"temperature":0.2`)
	res, err := e.router.Complete(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || gjson.GetBytes(res.Body, "choices.0.message.content").Str != "hello world" {
		t.Fatalf("res = %d %s", res.Status, res.Body)
	}
	if res.Usage.Input != 2 || res.Usage.Output != 2 || res.Provider != "oa" || res.Deployment != "oa-gpt" || res.ModelServed != "gpt-4o" || res.Attempts != 1 {
		t.Fatalf("res = %+v", res)
	}
	got := e.sims["oa"].Requests()[0]
	want := strings.Replace(string(call.Body), `"model":"gpt"`, `"model":"gpt-4o"`, 1)
	if string(got.Body) != want {
		t.Fatalf("provider got %s\nwant %s", got.Body, want)
	}
	if got.Header.Get("Authorization") != "Bearer key-oa" || got.Header.Get("X-Request-Id") != "req-1" {
		t.Fatalf("headers = %v", got.Header)
	}
}

func TestComplete_OpenAICallerOnAnthropicProviderIsTranslatedBothWays(t *testing.T) {
	e := newEnv(t)
	call := chat("claude", "")
	call.Body = []byte(`{"model":"claude","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi claude"}],"max_tokens":50,"stop":"END"}`)
	res, err := e.router.Complete(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(res.Body, "object").Str != "chat.completion" || gjson.GetBytes(res.Body, "choices.0.message.content").Str != "hi claude" ||
		gjson.GetBytes(res.Body, "choices.0.finish_reason").Str != "stop" {
		t.Fatalf("body = %s", res.Body)
	}
	if res.Usage.Input != 4 || res.Usage.Output != 2 || gjson.GetBytes(res.Body, "usage.total_tokens").Int() != 6 {
		t.Fatalf("usage = %+v body %s", res.Usage, res.Body)
	}
	sent := e.sims["an"].Requests()[0]
	if gjson.GetBytes(sent.Body, "system").Str != "be brief" || gjson.GetBytes(sent.Body, "max_tokens").Int() != 50 ||
		gjson.GetBytes(sent.Body, "stop_sequences.0").Str != "END" || gjson.GetBytes(sent.Body, "messages.0.content.0.text").Str != "hi claude" {
		t.Fatalf("sent %s", sent.Body)
	}
	if sent.Header.Get("x-api-key") != "key-an" || sent.Header.Get("anthropic-version") == "" {
		t.Fatalf("headers %v", sent.Header)
	}
}

func TestComplete_AnthropicCallerOnOpenAIProviderIsTranslatedBothWays(t *testing.T) {
	e := newEnv(t)
	call := routing.Call{Environment: "dev", Format: routing.FormatAnthropicMessages,
		Body: []byte(`{"model":"gpt","max_tokens":20,"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"hello gpt"}]}]}`)}
	res, err := e.router.Complete(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(res.Body, "type").Str != "message" || gjson.GetBytes(res.Body, "content.0.text").Str != "hello gpt" ||
		gjson.GetBytes(res.Body, "stop_reason").Str != "end_turn" || gjson.GetBytes(res.Body, "usage.output_tokens").Int() != 2 {
		t.Fatalf("body = %s", res.Body)
	}
	sent := e.sims["oa"].Requests()[0]
	if gjson.GetBytes(sent.Body, "messages.0.role").Str != "system" || gjson.GetBytes(sent.Body, "messages.1.content").Str != "hello gpt" {
		t.Fatalf("sent %s", sent.Body)
	}
}

func TestComplete_ToolCallRoundTripAcrossFormats(t *testing.T) {
	e := newEnv(t)
	tools := `,"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"input":{"type":"string"}}}}}]`
	call := chat("claude", "")
	call.Body = oaBody("claude", "please lookup order 7", tools)
	res, err := e.router.Complete(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	tc := gjson.GetBytes(res.Body, "choices.0.message.tool_calls.0")
	if tc.Get("function.name").Str != "lookup" || gjson.GetBytes(res.Body, "choices.0.finish_reason").Str != "tool_calls" {
		t.Fatalf("body %s", res.Body)
	}
	var args map[string]string
	if err := json.Unmarshal([]byte(tc.Get("function.arguments").Str), &args); err != nil || args["input"] != "please lookup order 7" {
		t.Fatalf("args %q", tc.Get("function.arguments").Str)
	}
	// Send the tool result back in OpenAI shape; Anthropic must see a tool_result block.
	call.Body = []byte(`{"model":"claude","messages":[{"role":"user","content":"please lookup order 7"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"` + tc.Get("id").Str + `","type":"function","function":{"name":"lookup","arguments":` + tc.Get("function.arguments").Raw + `}}]},` +
		`{"role":"tool","tool_call_id":"` + tc.Get("id").Str + `","content":"shipped"}]` + tools + `}`)
	res, err = e.router.Complete(context.Background(), call)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(res.Body, "choices.0.message.content").Str; got != "tool result: shipped" {
		t.Fatalf("content %q", got)
	}
	sent := e.sims["an"].Requests()[1]
	if gjson.GetBytes(sent.Body, "messages.2.content.0.type").Str != "tool_result" || gjson.GetBytes(sent.Body, "messages.1.content.0.type").Str != "tool_use" {
		t.Fatalf("sent %s", sent.Body)
	}
}

func TestComplete_AzureUsesDeploymentURLAndAPIKeyHeader(t *testing.T) {
	e := newEnv(t)
	res, err := e.router.Complete(context.Background(), chat("azure", "eu please"))
	if err != nil || res.Status != 200 {
		t.Fatalf("%v %+v", err, res)
	}
	r := e.sims["az"].Requests()[0]
	if r.Path != "/openai/deployments/gpt4o-eu/chat/completions" || r.Query != "api-version=2024-10-21" || r.Header.Get("api-key") != "key-az" || r.Header.Get("Authorization") != "" {
		t.Fatalf("request %s?%s %v", r.Path, r.Query, r.Header)
	}
}

func TestComplete_RetriesA429HonouringRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 429, RetryAfter: "2"})
	res, err := e.router.Complete(context.Background(), chat("gpt", "x"))
	if err != nil || res.Status != 200 || res.Attempts != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if len(e.sleeps) != 1 || e.sleeps[0] < 2*time.Second {
		t.Fatalf("sleeps = %v, want one of at least 2s", e.sleeps)
	}
}

func TestComplete_RetriesAResetAndA5xx(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Reset: true}, sim.Fault{Status: 502})
	res, err := e.router.Complete(context.Background(), chat("gpt", "x"))
	if err != nil || res.Status != 200 || res.Attempts != 3 {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestComplete_NeverRetriesA4xx(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 400, Message: "bad thing"})
	res, err := e.router.Complete(context.Background(), chat("fallback", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 400 || res.Attempts != 1 || e.sims["oa"].RequestCount() != 1 || e.sims["an"].RequestCount() != 0 {
		t.Fatalf("res %+v oa=%d an=%d", res, e.sims["oa"].RequestCount(), e.sims["an"].RequestCount())
	}
	if gjson.GetBytes(res.Body, "error.message").Str != "bad thing" {
		t.Fatalf("body %s", res.Body)
	}
}

func TestComplete_FallsBackToTheNextPriorityOnServerErrors(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 500, Times: -1})
	res, err := e.router.Complete(context.Background(), chat("fallback", "fall back"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Provider != "an" || res.Deployment != "secondary" || res.Attempts != 2 || gjson.GetBytes(res.Body, "choices.0.message.content").Str != "fall back" {
		t.Fatalf("res %+v %s", res, res.Body)
	}
	if len(e.sleeps) != 0 {
		t.Fatalf("a fallback to another deployment waited %v", e.sleeps)
	}
}

func TestComplete_ExhaustedRetriesAnswerWithTheLastProviderError(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 503, Times: -1})
	res, err := e.router.Complete(context.Background(), chat("gpt", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 503 || res.Attempts != 3 || e.sims["oa"].RequestCount() != 3 || gjson.GetBytes(res.Body, "error.type").Str != "server_error" {
		t.Fatalf("res %+v %s", res, res.Body)
	}
}

func TestComplete_BreakerOpensAndTheDeploymentIsRoutedAround(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 500, Times: -1})
	// Breaker opens after 3 consecutive failures (env setting).
	for range 3 {
		if _, err := e.router.Complete(context.Background(), chat("fallback", "x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.router.BreakerState("fallback", "primary"); got != "open" {
		t.Fatalf("breaker %s", got)
	}
	before := e.sims["oa"].RequestCount()
	res, err := e.router.Complete(context.Background(), chat("fallback", "x"))
	if err != nil || res.Provider != "an" || res.Attempts != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	if e.sims["oa"].RequestCount() != before {
		t.Fatal("open breaker still sent traffic")
	}
}

func TestComplete_UnreadableKeyIsRoutedAround(t *testing.T) {
	e := newEnv(t)
	delete(e.keys.m, "dev/oa/api_key")
	res, err := e.router.Complete(context.Background(), chat("fallback", "x"))
	if err != nil || res.Provider != "an" || e.sims["oa"].RequestCount() != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	_, err = e.router.Complete(context.Background(), chat("gpt", "x"))
	if !errors.Is(err, routing.ErrUnavailable) || strings.Contains(err.Error(), "key-") {
		t.Fatalf("err = %v", err)
	}
}

func TestComplete_NamedKeysAreBalanced(t *testing.T) {
	e := newEnv(t, func(s *catalog.Snapshot) {
		s.Routes[0].Deployments[0].KeyNames = []string{"k1", "k2"}
	})
	e.keys.m["dev/oa/k1"], e.keys.m["dev/oa/k2"] = "first", "second"
	for range 20 {
		if _, err := e.router.Complete(context.Background(), chat("gpt", "x")); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, r := range e.sims["oa"].Requests() {
		seen[r.Header.Get("Authorization")]++
	}
	if seen["Bearer first"] == 0 || seen["Bearer second"] == 0 {
		t.Fatalf("keys used %v", seen)
	}
}

func TestComplete_WeightsSplitTraffic(t *testing.T) {
	e := newEnv(t, func(s *catalog.Snapshot) {
		s.Routes = append(s.Routes, catalog.Route{Alias: "split", Deployments: []catalog.Deployment{
			{Name: "heavy", Provider: "oa", Model: "gpt-4o", Weight: 3},
			{Name: "light", Provider: "oa2", Model: "gpt-4o", Weight: 1},
		}})
	})
	for range 200 {
		if _, err := e.router.Complete(context.Background(), chat("split", "x")); err != nil {
			t.Fatal(err)
		}
	}
	heavy, light := e.sims["oa"].RequestCount(), e.sims["oa2"].RequestCount()
	if heavy+light != 200 || heavy < 120 || heavy > 180 {
		t.Fatalf("heavy=%d light=%d, want about 150/50", heavy, light)
	}
}

func TestComplete_VendorRiskBlocksWithAReason(t *testing.T) {
	e := newEnv(t, func(s *catalog.Snapshot) {
		for i := range s.Providers {
			if s.Providers[i].Name == "oa" {
				s.Providers[i].Vendor.SOC2ReportExpiry = time.Now().Add(-48 * time.Hour)
			}
		}
	})
	_, err := e.router.Complete(context.Background(), chat("gpt", "x"))
	if !errors.Is(err, catalog.ErrVendorRisk) || !strings.Contains(err.Error(), "SOC 2 report expired") {
		t.Fatalf("err = %v", err)
	}
	call := chat("claude", "x")
	call.DataClasses = []string{"PII.HEALTH.DIAGNOSIS"}
	_, err = e.router.Complete(context.Background(), call)
	if !errors.Is(err, catalog.ErrVendorRisk) || !strings.Contains(err.Error(), "BAA") {
		t.Fatalf("err = %v", err)
	}
	if e.sims["oa"].RequestCount()+e.sims["an"].RequestCount() != 0 {
		t.Fatal("a refused call reached a provider")
	}
}

func TestComplete_DataClassRoutesToTheVendorThatQualifies(t *testing.T) {
	e := newEnv(t, func(s *catalog.Snapshot) {
		for i := range s.Providers {
			if s.Providers[i].Name == "an" {
				s.Providers[i].Vendor.BAASigned = true
			}
		}
	})
	call := chat("fallback", "x")
	call.DataClasses = []string{"PII.HEALTH"}
	res, err := e.router.Complete(context.Background(), call)
	if err != nil || res.Provider != "an" || e.sims["oa"].RequestCount() != 0 {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestComplete_AllowedProvidersRestrictRouting(t *testing.T) {
	e := newEnv(t)
	call := chat("fallback", "x")
	call.AllowedProviders = []string{"an"}
	res, err := e.router.Complete(context.Background(), call)
	if err != nil || res.Provider != "an" {
		t.Fatalf("%v %+v", err, res)
	}
	call = chat("gpt", "x")
	call.AllowedProviders = []string{"an"}
	if _, err := e.router.Complete(context.Background(), call); !errors.Is(err, routing.ErrNotAllowed) {
		t.Fatalf("err = %v", err)
	}
}

func TestComplete_RejectsBadCalls(t *testing.T) {
	e := newEnv(t)
	for name, c := range map[string]routing.Call{
		"unknown model": chat("nope", "x"),
		"bad json":      {Environment: "dev", Format: routing.FormatOpenAIChat, Body: []byte(`{"model":"gpt",`)},
		"no model":      {Environment: "dev", Format: routing.FormatOpenAIChat, Body: []byte(`{"messages":[]}`)},
		"no format":     {Environment: "dev", Body: oaBody("gpt", "x", "")},
	} {
		_, err := e.router.Complete(context.Background(), c)
		if !errors.Is(err, routing.ErrInvalid) && !errors.Is(err, routing.ErrUnknownModel) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestEmbed_PassesThroughWithUsage(t *testing.T) {
	e := newEnv(t)
	res, err := e.router.Embed(context.Background(), routing.EmbedCall{Environment: "dev", Body: []byte(`{"model":"embed","input":["a b","c"]}`)})
	if err != nil || res.Status != 200 || res.Usage.Input != 3 || len(gjson.GetBytes(res.Body, "data").Array()) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if gjson.GetBytes(e.sims["oa"].Requests()[0].Body, "model").Str != "text-embedding-3-small" {
		t.Fatal("model not rewritten")
	}
}
