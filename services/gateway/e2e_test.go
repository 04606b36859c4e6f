package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	gatewayv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1/gatewayv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
	"github.com/bulwarkhq/bulwark/services/redaction"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

const (
	keyApp    = "bk_test_app_key"
	keyTight  = "bk_test_tight_key"
	keyStrict = "bk_test_strict_key"
	keyOpen   = "bk_test_failopen_key"
)

type env struct {
	t        *testing.T
	url      string
	sim      *sim.Sim
	simSrv   *httptest.Server
	gw       *gateway.Gateway
	js       jetstream.JetStream
	identity *testIdentity
	servers  map[string]*httptest.Server

	mu  sync.Mutex
	ids []string // request ids answered
}

type envOpts struct {
	maxSpoolBytes int64
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	e := &env{t: t, servers: map[string]*httptest.Server{}}

	vs := platformtest.Vault(t)
	natsSrv := platformtest.NATSServer(t)
	nc, err := nats.Connect(natsSrv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.js = js

	var acfg audit.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_AUDIT_", &acfg); err != nil {
		t.Fatal(err)
	}
	acfg.AuthDisabled = true // its query RPCs are not served here; only ingestion runs
	auditSvc, err := audit.New(ctx, audit.Params{Config: acfg, Logger: log, JS: js, Vault: vs.Client})
	if err != nil {
		t.Fatalf("audit service: %v", err)
	}
	go func() { _ = auditSvc.Run(ctx) }()
	hasher, err := payloadhash.LoadFromVault(ctx, payloadhash.VaultParams{Client: vs.Client, Mount: "secret", Path: "bulwark/audit/payload-hmac", Create: true})
	if err != nil {
		t.Fatalf("payload hmac key: %v", err)
	}

	var rcfg redaction.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_REDACTION_", &rcfg); err != nil {
		t.Fatal(err)
	}
	red, err := redaction.New(redaction.Params{Config: rcfg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.servers["redaction"] = h2cServer(red.Handler)

	e.sim = sim.New(sim.Params{})
	e.simSrv = httptest.NewServer(e.sim)
	t.Cleanup(e.simSrv.Close)

	rdb, prefix := platformtest.Redis(t)
	e.identity = &testIdentity{version: "7", deniedModels: []string{"gpt-4o-mini"},
		prompts: map[string]string{"support-bot@7": "You are the support bot of Example Corp."},
		keys: map[string]testKey{
			keyApp:    {principal: "svc-app", team: "team-a", env: "dev", limit: 1000},
			keyTight:  {principal: "svc-tight", team: "team-b", env: "dev", budget: 60},
			keyStrict: {principal: "svc-strict", team: "team-c", env: "dev", strict: true},
			keyOpen:   {principal: "svc-open", team: "team-d", env: "dev", limit: 1000, failOpen: true},
		}}
	var lcfg ratelimit.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_RATELIMIT_", &lcfg); err != nil {
		t.Fatal(err)
	}
	lcfg.KeyPrefix = prefix
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lcfg, Logger: log, Redis: rdb, JS: js})
	if err != nil {
		t.Fatalf("ratelimit service: %v", err)
	}
	rlDone := make(chan struct{})
	go func() { defer close(rlDone); _ = rl.Run(ctx) }()
	// Stop the service (its consumer writes anomaly state) before the test's
	// Redis keys are deleted: cleanups run last-registered first.
	t.Cleanup(func() { cancel(); <-rlDone })
	router := &testRouter{simURL: e.simSrv.URL, models: []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small"}, hc: &http.Client{}}

	idMux := http.NewServeMux()
	idMux.Handle(identityv1connect.NewIdentityServiceHandler(e.identity))
	idMux.Handle(identityv1connect.NewPolicyServiceHandler(e.identity))
	e.servers["identity"] = h2cServer(idMux)
	e.servers["ratelimit"] = h2cServer(rl.Handler)
	rtMux := http.NewServeMux()
	rtMux.Handle(routerv1connect.NewRouterServiceHandler(router))
	e.servers["router"] = h2cServer(rtMux)
	for _, s := range e.servers {
		t.Cleanup(s.Close)
	}

	hc := platform.HTTPClient()
	routerClient := routerv1connect.NewRouterServiceClient(hc, e.servers["router"].URL)
	var cfg gateway.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SpoolDir = t.TempDir()
	cfg.AuditAckTimeout = 300 * time.Millisecond
	if o.maxSpoolBytes > 0 {
		cfg.MaxSpoolBytes = o.maxSpoolBytes
	}
	cfg.MaxBodyBytes = 64 << 10
	e.gw, err = gateway.New(gateway.Params{
		Config: cfg, Logger: log,
		Authenticator: identityv1connect.NewIdentityServiceClient(hc, e.servers["identity"].URL),
		Authorizer:    identityv1connect.NewPolicyServiceClient(hc, e.servers["identity"].URL),
		Limiter:       ratelimitv1connect.NewRateLimitServiceClient(hc, e.servers["ratelimit"].URL),
		Redactor:      redactionv1connect.NewRedactionServiceClient(hc, e.servers["redaction"].URL),
		Router:        routerClient, Streamer: gateway.StreamerFromClient(routerClient),
		Hasher: hasher, NATS: nc, JS: js,
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	go e.gw.Run(ctx)
	srv, err := platform.NewServer(platform.ServerParams{Name: "gateway", Logger: log,
		Services: []platform.Service{{Name: e.gw.Name, Path: e.gw.Path, Handler: e.gw.Handler}}, Routes: e.gw.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	gs := h2cServer(srv.Handler())
	t.Cleanup(gs.Close)
	e.url = gs.URL
	return e
}

// answered notes the request id of an HTTP answer.
func (e *env) answered(res *http.Response) string {
	e.t.Helper()
	if res == nil {
		e.t.Fatal("no HTTP response captured")
	}
	id := res.Header.Get("x-request-id")
	if !strings.HasPrefix(id, "req_") {
		e.t.Fatalf("answer without x-request-id (status %d)", res.StatusCode)
	}
	e.mu.Lock()
	e.ids = append(e.ids, id)
	e.mu.Unlock()
	return id
}

func (e *env) openai(key string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(e.url + "/v1"), option.WithAPIKey(key), option.WithMaxRetries(0)}, opts...)...)
}

func (e *env) anthropic(key string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(e.url), aoption.WithAPIKey(key), aoption.WithMaxRetries(0))
}

// auditEvents returns the llm_call events in the audit stream by request id,
// once it holds at least want of them.
func (e *env) auditEvents(want int) map[string][]*auditv1.LlmCall {
	e.t.Helper()
	return auditEvents(e.t, e.js, want)
}

// auditEvents reads js's audit stream until it holds at least want llm_call
// events (or 20 s have passed) and returns them by request id.
func auditEvents(t testing.TB, js jetstream.JetStream, want int) map[string][]*auditv1.LlmCall {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		got := map[string][]*auditv1.LlmCall{}
		n := 0
		s, err := js.Stream(ctx, "BULWARK_AUDIT")
		if err != nil {
			t.Fatalf("audit stream: %v", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil || m.Subject != "bulwark.audit.v1.llm_call" {
				continue
			}
			ev := &auditv1.AuditEvent{}
			if err := proto.Unmarshal(m.Data, ev); err != nil {
				t.Fatalf("undecodable audit event: %v", err)
			}
			lc := ev.GetLlmCall()
			got[lc.GetRequestId()] = append(got[lc.GetRequestId()], lc)
			n++
		}
		if n >= want || ctx.Err() != nil {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOneAuditEventEach asserts every answered request has exactly one record.
func (e *env) checkOneAuditEventEach() map[string]*auditv1.LlmCall {
	e.t.Helper()
	e.mu.Lock()
	ids := append([]string(nil), e.ids...)
	e.mu.Unlock()
	events := e.auditEvents(len(ids))
	out := map[string]*auditv1.LlmCall{}
	for _, id := range ids {
		if n := len(events[id]); n != 1 {
			e.t.Fatalf("request %s has %d audit events, want 1", id, n)
		}
		out[id] = events[id][0]
	}
	if len(events) != len(ids) {
		e.t.Fatalf("audit holds events for %d requests, %d were answered", len(events), len(ids))
	}
	return out
}

func (e *env) simBodies() string {
	var b strings.Builder
	for _, r := range e.sim.Requests() {
		b.Write(r.Body)
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	piiEmail = "jane.doe@example.com"
	piiPhone = "+1 415 555 0132"
	piiText  = "Please email " + piiEmail + " or call " + piiPhone + " about the refund."
)

func TestE2E_SDKCallsRedactPIIBeforeTheProviderAndRestoreItInTheAnswer(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	oa := e.openai(keyApp)
	an := e.anthropic(keyApp)

	t.Run("openai", func(t *testing.T) {
		var raw *http.Response
		res, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiText)}}, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if got := res.Choices[0].Message.Content; got != piiText {
			t.Fatalf("answer = %q, want the originals restored: %q", got, piiText)
		}
		if res.Usage.PromptTokens == 0 {
			t.Fatal("usage lost")
		}
	})
	t.Run("openai stream", func(t *testing.T) {
		var raw *http.Response
		st := oa.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiText)}}, option.WithResponseInto(&raw))
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for st.Next() {
			acc.AddChunk(st.Current())
			chunks++
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if got := acc.Choices[0].Message.Content; got != piiText {
			t.Fatalf("streamed answer = %q, want %q", got, piiText)
		}
		if chunks < 3 {
			t.Fatalf("answer came in %d chunks; the stream was not relayed", chunks)
		}
		if acc.Usage.TotalTokens != 0 {
			t.Fatal("usage chunk the client did not ask for reached it")
		}
	})
	t.Run("openai tools and json mode", func(t *testing.T) {
		var raw *http.Response
		res, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("use get_weather for " + piiEmail)},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_weather",
				Parameters: openai.FunctionParameters{"type": "object"}})}}, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		tc := res.Choices[0].Message.ToolCalls
		if len(tc) != 1 || !strings.Contains(tc[0].Function.Arguments, piiEmail) {
			t.Fatalf("tool call arguments not restored: %+v", tc)
		}
		res, err = oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages:       []openai.ChatCompletionMessageParamUnion{openai.UserMessage("reply in JSON to " + piiEmail)},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}},
			option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if c := res.Choices[0].Message.Content; !strings.HasPrefix(c, "{") || !strings.Contains(c, piiEmail) {
			t.Fatalf("JSON-mode answer = %q", c)
		}
	})
	t.Run("anthropic", func(t *testing.T) {
		var raw *http.Response
		msg, err := an.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 200,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(piiText))}}, aoption.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if got := msg.Content[0].Text; got != piiText {
			t.Fatalf("answer = %q, want %q", got, piiText)
		}
	})
	t.Run("anthropic stream", func(t *testing.T) {
		var raw *http.Response
		st := an.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 200,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(piiText))}}, aoption.WithResponseInto(&raw))
		var msg anthropic.Message
		for st.Next() {
			if err := msg.Accumulate(st.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if got := msg.Content[0].Text; got != piiText {
			t.Fatalf("streamed answer = %q, want %q", got, piiText)
		}
	})
	t.Run("embeddings", func(t *testing.T) {
		var raw *http.Response
		res, err := oa.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(piiText)}}, option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		if len(res.Data) != 1 || len(res.Data[0].Embedding) == 0 {
			t.Fatalf("embeddings = %+v", res.Data)
		}
	})
	t.Run("models", func(t *testing.T) {
		page, err := oa.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 4 {
			t.Fatalf("models = %d, want 4", len(page.Data))
		}
	})

	sent := e.simBodies()
	for _, v := range []string{piiEmail, "555 0132"} {
		if strings.Contains(sent, v) {
			t.Fatalf("the provider received %q", v)
		}
	}
	if !strings.Contains(sent, "⟨EMAIL_ADDRESS_1⟩") {
		t.Fatalf("the provider did not receive placeholders: %s", sent)
	}
	for id, ev := range e.checkOneAuditEventEach() {
		if ev.GetDecision() != auditv1.Decision_DECISION_ALLOWED || ev.GetStatus() != 200 || ev.GetPrincipalId() != "svc-app" {
			t.Fatalf("%s: audit %v", id, ev)
		}
		if len(ev.GetRequestHmac()) != 64 || len(ev.GetResponseHmac()) != 64 {
			t.Fatalf("%s: payload HMACs missing", id)
		}
		if ev.GetInputTokens() == 0 {
			t.Fatalf("%s: the provider's usage is not in the record", id)
		}
		if ev.GetFindings()["EMAIL_ADDRESS"] == 0 {
			t.Fatalf("%s: findings not recorded: %v", id, ev.GetFindings())
		}
		if proto.Size(ev) > 0 && strings.Contains(ev.String(), piiEmail) {
			t.Fatalf("%s: the audit record holds PII", id)
		}
	}
}

func TestE2E_RefusalsHaveTheirStatusErrorShapeAndOneAuditEvent(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	oa := e.openai(keyApp)

	expectOpenAIError := func(t *testing.T, err error, status int, typ string) *openai.Error {
		t.Helper()
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("error = %v, want an API error %d", err, status)
		}
		if apiErr.StatusCode != status || apiErr.Type != typ {
			t.Fatalf("error = %d %q (%s), want %d %q", apiErr.StatusCode, apiErr.Type, apiErr.Message, status, typ)
		}
		e.answered(apiErr.Response)
		return apiErr
	}
	chat := func(c openai.Client, model, text string, opts ...option.RequestOption) error {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}}, opts...)
		return err
	}

	t.Run("denied model is 403", func(t *testing.T) {
		expectOpenAIError(t, chat(oa, "gpt-4o-mini", "hello"), 403, "permission_error")
	})
	t.Run("forbidden prompt is 403", func(t *testing.T) {
		expectOpenAIError(t, chat(oa, "gpt-4o", "hello", option.WithHeader("x-bulwark-prompt", "jailbreak@1")), 403, "permission_error")
	})
	t.Run("registered prompt is put first", func(t *testing.T) {
		var raw *http.Response
		if err := chat(oa, "gpt-4o", "hello", option.WithHeader("x-bulwark-prompt", "support-bot@7"), option.WithResponseInto(&raw)); err != nil {
			t.Fatal(err)
		}
		e.answered(raw)
		reqs := e.sim.Requests()
		if last := string(reqs[len(reqs)-1].Body); !strings.Contains(last, "You are the support bot of Example Corp.") {
			t.Fatalf("system prompt not sent: %s", last)
		}
	})
	t.Run("blocked secret is 400", func(t *testing.T) {
		before := e.sim.RequestCount()
		apiErr := expectOpenAIError(t, chat(oa, "gpt-4o", "deploy with AKIAZ7QX3RT5LM2WP4VN please"), 400, "invalid_request_error")
		if apiErr.Code != "content_blocked" || strings.Contains(apiErr.Message, "AKIA") {
			t.Fatalf("blocked error = %q %q", apiErr.Code, apiErr.Message)
		}
		if e.sim.RequestCount() != before {
			t.Fatal("a blocked request reached the provider")
		}
	})
	t.Run("exceeded budget is 429 with Retry-After and rate-limit headers", func(t *testing.T) {
		tight := e.openai(keyTight)
		var lastErr error
		for range 10 {
			var raw *http.Response
			lastErr = chat(tight, "gpt-4o", "hello there", option.WithJSONSet("max_tokens", 40), option.WithResponseInto(&raw))
			if lastErr != nil {
				break
			}
			e.answered(raw)
		}
		apiErr := expectOpenAIError(t, lastErr, 429, "rate_limit_error")
		h := apiErr.Response.Header
		if h.Get("Retry-After") == "" || h.Get("x-ratelimit-limit-tokens") != "60" || h.Get("x-ratelimit-reset-tokens") == "" {
			t.Fatalf("429 headers = %v", h)
		}
	})
	t.Run("unknown key is 401 in both shapes", func(t *testing.T) {
		expectOpenAIError(t, chat(e.openai("bk_wrong"), "gpt-4o", "hello"), 401, "invalid_request_error")
		wrong := e.anthropic("bk_wrong")
		_, err := wrong.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 10,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
		var aerr *anthropic.Error
		if !errors.As(err, &aerr) || aerr.StatusCode != 401 || !strings.Contains(aerr.RawJSON(), `"authentication_error"`) {
			t.Fatalf("anthropic 401 = %v", err)
		}
		e.answered(aerr.Response)
	})
	t.Run("anthropic denial has anthropic shape", func(t *testing.T) {
		an := e.anthropic(keyApp)
		_, err := an.Messages.New(ctx, anthropic.MessageNewParams{Model: "gpt-4o-mini", MaxTokens: 10,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
		var aerr *anthropic.Error
		if !errors.As(err, &aerr) || aerr.StatusCode != 403 || !strings.Contains(aerr.RawJSON(), `"permission_error"`) {
			t.Fatalf("anthropic 403 = %v", err)
		}
		e.answered(aerr.Response)
	})
	t.Run("unknown model is 404", func(t *testing.T) {
		expectOpenAIError(t, chat(oa, "no-such-model", "hello"), 404, "invalid_request_error")
	})
	t.Run("oversized body is 413", func(t *testing.T) {
		expectOpenAIError(t, chat(oa, "gpt-4o", strings.Repeat("a", 70<<10)), 413, "invalid_request_error")
	})

	events := e.checkOneAuditEventEach()
	decisions := map[auditv1.Decision]int{}
	for _, ev := range events {
		decisions[ev.GetDecision()]++
	}
	for _, d := range []auditv1.Decision{auditv1.Decision_DECISION_DENIED_POLICY, auditv1.Decision_DECISION_DENIED_REDACTION,
		auditv1.Decision_DECISION_DENIED_RATE_LIMIT, auditv1.Decision_DECISION_DENIED_AUTH} {
		if decisions[d] == 0 {
			t.Fatalf("no audit event with decision %v: %v", d, decisions)
		}
	}
}

func TestE2E_GatewayServiceOverConnectAndGRPCRunsThePipeline(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for name, opts := range map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}} {
		t.Run(name, func(t *testing.T) {
			c := gatewayv1connect.NewGatewayServiceClient(platform.HTTPClient(), e.url, opts...)
			req := connect.NewRequest(&gatewayv1.ChatCompleteRequest{Chat: &gatewayv1.Chat{Model: "gpt-4o",
				Messages: []*gatewayv1.Message{{Role: "user", Content: piiText}}}})
			req.Header().Set("Authorization", "Bearer "+keyApp)
			res, err := c.ChatComplete(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.GetMessage().GetContent() != piiText || res.Msg.GetRedactions()["EMAIL_ADDRESS"] != 1 {
				t.Fatalf("answer = %v", res.Msg)
			}
			sreq := connect.NewRequest(&gatewayv1.StreamChatCompleteRequest{Chat: &gatewayv1.Chat{Model: "gpt-4o",
				Messages: []*gatewayv1.Message{{Role: "user", Content: piiText}}}})
			sreq.Header().Set("Authorization", "Bearer "+keyApp)
			st, err := c.StreamChatComplete(ctx, sreq)
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			var finish string
			for st.Receive() {
				text.WriteString(st.Msg().GetDelta())
				if f := st.Msg().GetFinishReason(); f != "" {
					finish = f
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if text.String() != piiText || finish != "stop" {
				t.Fatalf("streamed = %q (finish %q)", text.String(), finish)
			}
			bad := connect.NewRequest(&gatewayv1.ChatCompleteRequest{Chat: &gatewayv1.Chat{Model: "gpt-4o-mini",
				Messages: []*gatewayv1.Message{{Role: "user", Content: "hi"}}}})
			bad.Header().Set("Authorization", "Bearer "+keyApp)
			if _, err := c.ChatComplete(ctx, bad); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("denied model = %v", err)
			}
		})
	}
	if strings.Contains(e.simBodies(), piiEmail) {
		t.Fatal("the provider received PII")
	}
}

func TestE2E_PolicyChangedDropsCachedDecisions(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	chat := func() error {
		c := e.openai(keyApp)
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}})
		return err
	}
	for range 3 {
		if err := chat(); err != nil {
			t.Fatal(err)
		}
	}
	e.identity.mu.Lock()
	hits := e.identity.authorizeHits
	e.identity.deniedModels = append(e.identity.deniedModels, "gpt-4o")
	e.identity.mu.Unlock()
	if hits != 1 {
		t.Fatalf("authorize called %d times for 3 equal requests; decisions are not cached", hits)
	}
	if err := chat(); err != nil {
		t.Fatalf("cached decision not used: %v", err)
	}
	nc, err := nats.Connect(e.js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(gateway.SubjectPolicyChanged, []byte{}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	platformtest.WaitFor(t, 5*time.Second, "the policy change to apply (a 403)", func(context.Context) error {
		err := chat()
		if apiErr := (*openai.Error)(nil); errors.As(err, &apiErr) && apiErr.StatusCode == 403 {
			return nil
		}
		return fmt.Errorf("chat gave %v", err)
	})
}

func statusOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 200
	}
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("not an API error: %v", err)
	}
	return apiErr.StatusCode
}

func TestE2E_FailureSemanticsPerDependencyDown(t *testing.T) {
	e := newEnv(t, envOpts{maxSpoolBytes: 4096})
	ctx := context.Background()
	call := func(key, model string) (int, *http.Response) {
		var raw *http.Response
		c := e.openai(key)
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello " + piiEmail)}}, option.WithResponseInto(&raw))
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			raw = apiErr.Response
		}
		if raw != nil {
			e.answered(raw)
		}
		return statusOf(t, err), raw
	}
	// Warm the principal and decision caches of keyApp and keyOpen.
	for _, k := range []string{keyApp, keyOpen, keyStrict} {
		if s, _ := call(k, "gpt-4o"); s != 200 {
			t.Fatalf("warm-up %s = %d", k, s)
		}
	}

	t.Run("provider failing is 502", func(t *testing.T) {
		e.sim.Inject(sim.Fault{Status: 500, Times: 1})
		if s, _ := call(keyApp, "gpt-4o"); s != 502 {
			t.Fatalf("status = %d, want 502", s)
		}
	})
	t.Run("ratelimit down fails closed by default and open when policy says so", func(t *testing.T) {
		e.servers["ratelimit"].Close()
		if s, _ := call(keyApp, "gpt-4o"); s != 503 {
			t.Fatalf("closed: status = %d, want 503", s)
		}
		if s, _ := call(keyOpen, "gpt-4o"); s != 200 {
			t.Fatalf("open: status = %d, want 200", s)
		}
	})
	t.Run("router down is 502", func(t *testing.T) {
		e.servers["router"].Close()
		if s, _ := call(keyOpen, "gpt-4o"); s != 502 {
			t.Fatalf("status = %d, want 502", s)
		}
	})
	t.Run("redaction down fails closed", func(t *testing.T) {
		e.servers["redaction"].Close()
		if s, _ := call(keyOpen, "gpt-4o"); s != 503 {
			t.Fatalf("status = %d, want 503", s)
		}
	})
	t.Run("identity down: unknown credentials get 503, not 401", func(t *testing.T) {
		e.servers["identity"].Close()
		if s, _ := call("bk_never_seen", "gpt-4o"); s != 503 {
			t.Fatalf("status = %d, want 503", s)
		}
	})

	events := e.checkOneAuditEventEach()
	var flagged bool
	for _, ev := range events {
		for _, f := range ev.GetAnomalyFlags() {
			if f == "ratelimit_unreachable_fail_open" {
				flagged = true
			}
		}
	}
	if !flagged {
		t.Fatal("the fail-open request is not flagged in its audit record")
	}
}

func TestE2E_NATSDownAnswersAreSpooledAndStrictRequestsRefusedWhenSpoolFull(t *testing.T) {
	e := newEnv(t, envOpts{maxSpoolBytes: 3000})
	ctx := context.Background()
	call := func(key string) int {
		var raw *http.Response
		c := e.openai(key)
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}, option.WithResponseInto(&raw))
		return statusOf(t, err)
	}
	if s := call(keyStrict); s != 200 {
		t.Fatalf("strict with NATS up = %d", s)
	}
	// Closing the gateway's NATS connection takes NATS away from it as a server outage would.
	e.js.Conn().Close()
	statuses := map[int]int{}
	for range 40 {
		statuses[call(keyStrict)]++
	}
	if statuses[200] == 0 || statuses[503] == 0 {
		t.Fatalf("strict statuses with NATS down = %v, want answers while the spool has room, then 503", statuses)
	}
	if e.gw.Spooled() == 0 {
		t.Fatal("nothing was spooled")
	}
	fmt.Fprintln(testWriter{t}, "spooled", e.gw.Spooled(), "statuses", statuses)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
