package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
)

// front is the thinnest HTTP face over the router's Connect API, the way the gateway
// uses it: SDK requests in, the router's answer or events written back verbatim.
func front(t *testing.T, c routerv1connect.RouterServiceClient) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f := routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT
		if strings.HasSuffix(r.URL.Path, "/messages") {
			f = routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES
		}
		call := &routerv1.Call{Environment: "dev", Format: f, Body: body}
		if !gjson.GetBytes(body, "stream").Bool() {
			res, err := c.Complete(r.Context(), connect.NewRequest(&routerv1.CompleteRequest{Call: call}))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(int(res.Msg.Status))
			_, _ = w.Write(res.Msg.Body)
			return
		}
		st, err := c.StreamComplete(r.Context(), connect.NewRequest(&routerv1.StreamCompleteRequest{Call: call}))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for st.Receive() {
			m := st.Msg()
			if m.Event != "" {
				_, _ = io.WriteString(w, "event: "+m.Event+"\n")
			}
			_, _ = io.WriteString(w, "data: "+string(m.Data)+"\n\n")
			w.(http.Flusher).Flush()
		}
	})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestSDK_OpenAIClientUsesAClaudeModelThroughTheRouter(t *testing.T) {
	f := newFixture(t)
	url := front(t, clients(f)["connect"])
	c := openai.NewClient(option.WithBaseURL(url+"/v1"), option.WithAPIKey("bulwark-key"), option.WithMaxRetries(0))
	ctx := context.Background()
	res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("sys"), openai.UserMessage("hello from openai sdk")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content != "hello from openai sdk" || res.Usage.CompletionTokens != 4 || res.Choices[0].FinishReason != "stop" {
		t.Fatalf("res %+v", res)
	}
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("please lookup the order")},
		Tools:         []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "lookup", Parameters: shared.FunctionParameters{"type": "object"}})},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	tc := acc.Choices[0].Message.ToolCalls
	if len(tc) != 1 || tc[0].Function.Name != "lookup" || !strings.Contains(tc[0].Function.Arguments, "please lookup the order") ||
		acc.Choices[0].FinishReason != "tool_calls" || acc.Usage.PromptTokens != 4 {
		t.Fatalf("acc %+v", acc.ChatCompletion)
	}
}

func TestSDK_AnthropicClientUsesAGPTModelThroughTheRouter(t *testing.T) {
	f := newFixture(t)
	url := front(t, clients(f)["grpc"])
	c := anthropic.NewClient(aoption.WithBaseURL(url), aoption.WithAPIKey("bulwark-key"), aoption.WithMaxRetries(0))
	ctx := context.Background()
	params := anthropic.MessageNewParams{Model: "gpt-4o", MaxTokens: 100,
		System:   []anthropic.TextBlockParam{{Text: "be brief"}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello from anthropic sdk"))}}
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "hello from anthropic sdk" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.OutputTokens != 4 {
		t.Fatalf("msg %+v", msg)
	}
	stream := c.Messages.NewStreaming(ctx, params)
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Content[0].Text != "hello from anthropic sdk" || acc.StopReason != anthropic.StopReasonEndTurn || acc.Usage.OutputTokens != 4 {
		t.Fatalf("acc %+v", acc)
	}
	sent := f.oa.Requests()
	if gjson.GetBytes(sent[0].Body, "messages.0.content").Str != "be brief" || sent[0].Header.Get("Authorization") != "Bearer sk-oa" {
		t.Fatalf("provider saw %s", sent[0].Body)
	}
}
