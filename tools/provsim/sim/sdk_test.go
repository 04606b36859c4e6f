package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func newSim(t *testing.T, p sim.Params) (*sim.Sim, string) {
	t.Helper()
	s := sim.New(p)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func oaClient(url string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(url + "/v1"), option.WithAPIKey("sk-test-1"), option.WithMaxRetries(0),
	}, opts...)...)
}

func anClient(url string, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(url), aoption.WithAPIKey("sk-ant-test-1"), aoption.WithMaxRetries(0),
	}, opts...)...)
}

func TestOpenAISDK_ChatCompletionEchoesLastUserMessageWithUsage(t *testing.T) {
	s, url := newSim(t, sim.Params{})
	c := oaClient(url)
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("be brief"),
			openai.UserMessage("hello there simulator"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Choices[0].Message.Content; got != "hello there simulator" {
		t.Fatalf("content = %q", got)
	}
	if res.Choices[0].FinishReason != "stop" || res.Model != "gpt-4o" || res.Object != "chat.completion" {
		t.Fatalf("finish=%q model=%q object=%q", res.Choices[0].FinishReason, res.Model, res.Object)
	}
	if res.Usage.PromptTokens != 5 || res.Usage.CompletionTokens != 3 || res.Usage.TotalTokens != 8 {
		t.Fatalf("usage = %+v", res.Usage)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer sk-test-1" || reqs[0].Path != "/v1/chat/completions" {
		t.Fatalf("recorded %+v", reqs)
	}
	if !strings.Contains(string(reqs[0].Body), "hello there simulator") {
		t.Fatalf("body not recorded: %s", reqs[0].Body)
	}
}

func TestOpenAISDK_StreamAccumulatesEchoAndReportsUsage(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != "one two three four" {
		t.Fatalf("content = %q", got)
	}
	if acc.Choices[0].FinishReason != "stop" || acc.Usage.CompletionTokens != 4 || acc.Usage.PromptTokens != 4 {
		t.Fatalf("finish=%q usage=%+v", acc.Choices[0].FinishReason, acc.Usage)
	}
	if chunks < 6 {
		t.Fatalf("only %d chunks: not streamed word by word", chunks)
	}
}

func TestOpenAISDK_StreamWithoutIncludeUsageSendsNoUsageChunk(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x y")},
	})
	for stream.Next() {
		if len(stream.Current().Choices) == 0 {
			t.Fatal("usage-only chunk sent although include_usage was not asked for")
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
}

func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("weather for a city"),
		Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"input": map[string]any{"type": "string"}}},
	})
}

func TestOpenAISDK_ToolCallWhenToolMentionedStreamedAndNot(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("please get_weather for Paris")},
		Tools:    []openai.ChatCompletionToolUnionParam{weatherTool()},
	}
	res, err := c.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	tc := res.Choices[0].Message.ToolCalls
	if res.Choices[0].FinishReason != "tool_calls" || len(tc) != 1 || tc[0].Function.Name != "get_weather" {
		t.Fatalf("tool calls = %+v finish=%q", tc, res.Choices[0].FinishReason)
	}
	var args map[string]string
	if err := json.Unmarshal([]byte(tc[0].Function.Arguments), &args); err != nil || args["input"] != "please get_weather for Paris" {
		t.Fatalf("arguments %q: %v", tc[0].Function.Arguments, err)
	}

	stream := c.Chat.Completions.NewStreaming(context.Background(), params)
	var acc openai.ChatCompletionAccumulator
	var finished openai.FinishedChatCompletionToolCall
	for stream.Next() {
		acc.AddChunk(stream.Current())
		if f, ok := acc.JustFinishedToolCall(); ok {
			finished = f
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if finished.Name != "get_weather" || finished.Arguments != tc[0].Function.Arguments {
		t.Fatalf("streamed tool call = %+v", finished)
	}

	// The tool result comes back as a tool message and is acknowledged.
	params.Messages = append(params.Messages, res.Choices[0].Message.ToParam(), openai.ToolMessage("sunny", tc[0].ID))
	res2, err := c.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Choices[0].Message.Content != "tool result: sunny" {
		t.Fatalf("after tool result: %q", res2.Choices[0].Message.Content)
	}
}

func TestOpenAISDK_JSONModeAnswersAJSONObject(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:          "gpt-4o",
		Messages:       []openai.ChatCompletionMessageParamUnion{openai.UserMessage("say \"hi\"")},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]string
	if err := json.Unmarshal([]byte(res.Choices[0].Message.Content), &obj); err != nil || obj["echo"] != `say "hi"` {
		t.Fatalf("content %q: %v", res.Choices[0].Message.Content, err)
	}
}

func TestOpenAISDK_EmbeddingsAreDeterministicUnitVectors(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	get := func() *openai.CreateEmbeddingResponse {
		res, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := get(), get()
	if len(a.Data) != 2 || len(a.Data[0].Embedding) != 8 {
		t.Fatalf("data = %+v", a.Data)
	}
	var norm float64
	for i, v := range a.Data[0].Embedding {
		norm += v * v
		if b.Data[0].Embedding[i] != v {
			t.Fatal("embedding not deterministic")
		}
	}
	if norm < 0.99 || norm > 1.01 {
		t.Fatalf("norm² = %v", norm)
	}
	if a.Data[0].Embedding[0] == a.Data[1].Embedding[0] {
		t.Fatal("different inputs gave the same vector")
	}
	if a.Usage.PromptTokens != 2 {
		t.Fatalf("usage = %+v", a.Usage)
	}
}

func TestOpenAISDK_ModelsListed(t *testing.T) {
	_, url := newSim(t, sim.Params{Models: []string{"m1", "m2"}})
	c := oaClient(url)
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "m1" {
		t.Fatalf("models = %+v", page.Data)
	}
}

func TestOpenAISDK_RateLimitIsATypedErrorWithRetryAfter(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	var resp *http.Response
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
	}, option.WithHeader(sim.FaultHeader, "status=429; retry-after=7"), option.WithResponseInto(&resp))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v", err)
	}
	if apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" {
		t.Fatalf("error = %+v", apiErr)
	}
	if got := apiErr.Response.Header.Get("Retry-After"); got != "7" {
		t.Fatalf("Retry-After = %q", got)
	}
	if apiErr.Response.Header.Get("x-ratelimit-limit-requests") == "" {
		t.Fatal("no rate-limit headers")
	}
}

func TestOpenAISDK_WrongKeyIs401InvalidAPIKey(t *testing.T) {
	_, url := newSim(t, sim.Params{APIKeys: []string{"right"}})
	c := oaClient(url)
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenAISDK_MidStreamFailureSurfacesAsStreamError(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := oaClient(url)
	stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a b c d e f g")},
	}, option.WithHeader(sim.FaultHeader, "midstream=3"))
	n := 0
	for stream.Next() {
		n++
	}
	if stream.Err() == nil || n != 3 {
		t.Fatalf("chunks=%d err=%v", n, stream.Err())
	}
}

func TestAzureSDK_DeploymentURLWithAPIKeyHeader(t *testing.T) {
	s, url := newSim(t, sim.Params{})
	c := openai.NewClient(azure.WithEndpoint(url, "2024-10-21"), azure.WithAPIKey("azure-key"), azure.WithUnsafeAllowHTTP(), option.WithMaxRetries(0))
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "my-gpt4o-deployment", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("via azure")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content != "via azure" || res.Model != "my-gpt4o-deployment" {
		t.Fatalf("res = %+v", res)
	}
	r := s.Requests()[0]
	if r.Path != "/openai/deployments/my-gpt4o-deployment/chat/completions" || !strings.Contains(r.Query, "api-version=2024-10-21") || r.Header.Get("api-key") != "azure-key" {
		t.Fatalf("request = %s ?%s api-key=%q", r.Path, r.Query, r.Header.Get("api-key"))
	}
}

func TestAnthropicSDK_MessageEchoesWithUsageAndHeaders(t *testing.T) {
	s, url := newSim(t, sim.Params{})
	c := anClient(url)
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 100,
		System:    []anthropic.TextBlockParam{{Text: "be kind"}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello claude friend"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "hello claude friend" || msg.StopReason != anthropic.StopReasonEndTurn {
		t.Fatalf("msg = %+v", msg)
	}
	if msg.Usage.InputTokens != 5 || msg.Usage.OutputTokens != 3 {
		t.Fatalf("usage = %+v", msg.Usage)
	}
	r := s.Requests()[0]
	if r.Header.Get("Authorization") != "Bearer sk-ant-test-1" || r.Header.Get("anthropic-version") == "" {
		t.Fatalf("headers = %v", r.Header)
	}
}

func TestAnthropicSDK_StreamAccumulatesTextAndUsage(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := anClient(url)
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream me please"))},
	})
	var msg anthropic.Message
	types := map[string]int{}
	for stream.Next() {
		ev := stream.Current()
		types[ev.Type]++
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "stream me please" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.OutputTokens != 3 || msg.Usage.InputTokens != 3 {
		t.Fatalf("msg = %+v", msg)
	}
	for _, ty := range []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"} {
		if types[ty] == 0 {
			t.Fatalf("no %s event: %v", ty, types)
		}
	}
}

func TestAnthropicSDK_ToolUseStreamedAndNotThenToolResult(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := anClient(url)
	tool := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{Properties: map[string]any{"input": map[string]any{"type": "string"}}}, "lookup")
	params := anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("lookup the order"))},
		Tools:    []anthropic.ToolUnionParam{tool},
	}
	msg, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || msg.Content[0].Type != "tool_use" || msg.Content[0].Name != "lookup" {
		t.Fatalf("msg = %+v", msg)
	}
	stream := c.Messages.NewStreaming(context.Background(), params)
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Content[0].Name != "lookup" || string(acc.Content[0].Input) != string(msg.Content[0].Input) {
		t.Fatalf("streamed tool input %s vs %s", acc.Content[0].Input, msg.Content[0].Input)
	}
	params.Messages = append(params.Messages, msg.ToParam(),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock(msg.Content[0].ID, "order shipped", false)))
	msg2, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if msg2.Content[0].Text != "tool result: order shipped" {
		t.Fatalf("after tool result: %+v", msg2.Content)
	}
}

func TestAnthropicSDK_ErrorsAreTypedWithRetryAfter(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := anClient(url)
	for _, tc := range []struct {
		spec, typ string
		status    int
	}{
		{"status=429; retry-after=3", "rate_limit_error", 429},
		{"status=529", "overloaded_error", 529},
		{"status=500", "api_error", 500},
	} {
		_, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
			Model: "claude-sonnet-4-5", MaxTokens: 10,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))},
		}, aoption.WithHeader(sim.FaultHeader, tc.spec))
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
			t.Fatalf("%s: err = %v", tc.spec, err)
		}
		if !strings.Contains(apiErr.RawJSON(), `"type":"`+tc.typ+`"`) {
			t.Fatalf("%s: body %s", tc.spec, apiErr.RawJSON())
		}
		if tc.status == 429 && apiErr.Response.Header.Get("Retry-After") != "3" {
			t.Fatalf("Retry-After = %q", apiErr.Response.Header.Get("Retry-After"))
		}
	}
}

func TestAnthropicSDK_MidStreamErrorEventFailsTheStream(t *testing.T) {
	_, url := newSim(t, sim.Params{})
	c := anClient(url)
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("a b c d e"))},
	}, aoption.WithHeader(sim.FaultHeader, "midstream=2; midstream-error"))
	n := 0
	for stream.Next() {
		n++
	}
	if stream.Err() == nil || n != 2 {
		t.Fatalf("events=%d err=%v", n, stream.Err())
	}
}
