package gateway_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// bearerInterceptor presents the gateway's system credential to identity.
func bearerInterceptor(key string) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	})
}

// TestRealIdentity_KeysAndDevPolicyGovernSDKCalls wires the real identity
// service (API keys hashed in JetStream KV, the built-in development policy)
// in-process through its Connect handlers, with the real ratelimit service and
// redaction engine.
func TestRealIdentity_KeysAndDevPolicyGovernSDKCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	nc, js := platformtest.NATS(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"},
		Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	var icfg identity.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_IDENTITY_", &icfg); err != nil {
		t.Fatal(err)
	}
	pepper := make([]byte, 32)
	_, _ = rand.Read(pepper)
	idn, err := identity.New(ctx, identity.Params{Config: icfg, Logger: log, NATS: nc, JetStream: js, Pepper: pepper})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	sys, err := idn.Bootstrap(ctx, identity.BootstrapParams{PrincipalID: "svc_gateway", Roles: []string{"system"}, Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := idn.Bootstrap(ctx, identity.BootstrapParams{PrincipalID: "svc_app", Roles: []string{"app"}, Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if sys.Secret == "" || app.Secret == "" {
		t.Fatal("bootstrap returned no keys")
	}
	idMux := http.NewServeMux()
	for _, s := range idn.Services {
		idMux.Handle(s.Path, s.Handler)
	}
	toIdentity := gateway.InProcessClient(idMux)

	rdb, prefix := platformtest.Redis(t)
	var lcfg ratelimit.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_RATELIMIT_", &lcfg); err != nil {
		t.Fatal(err)
	}
	lcfg.KeyPrefix = prefix
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lcfg, Logger: log, Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Params{})
	simSrv := httptest.NewServer(s)
	defer simSrv.Close()
	router := &testRouter{simURL: simSrv.URL, models: []string{"gpt-4o", "claude-sonnet-4-5"}, hc: &http.Client{}}
	_, routerHTTP := routerv1connect.NewRouterServiceHandler(router)
	eng, err := engine.New(engine.Params{HashKey: pepper})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := payloadhash.New(pepper)
	if err != nil {
		t.Fatal(err)
	}
	var cfg gateway.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SpoolDir = t.TempDir()
	gw, err := gateway.New(gateway.Params{Config: cfg, Logger: log,
		Authenticator: identityv1connect.NewIdentityServiceClient(toIdentity, "http://identity"),
		Authorizer:    identityv1connect.NewPolicyServiceClient(toIdentity, "http://identity", connect.WithInterceptors(bearerInterceptor(sys.Secret))),
		Limiter:       rl.API, Redactor: gateway.EngineRedactor(eng), Router: router,
		Streamer: gateway.StreamerFromClient(routerv1connect.NewRouterServiceClient(gateway.InProcessClient(routerHTTP), "http://router")),
		Hasher:   hasher, NATS: nc, JS: js})
	if err != nil {
		t.Fatal(err)
	}
	go gw.Run(ctx)
	srv, err := platform.NewServer(platform.ServerParams{Name: "gateway", Logger: log, Routes: gw.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	url := platformtest.Serve(t, srv.Handler())

	oa := openai.NewClient(option.WithBaseURL(url+"/v1"), option.WithAPIKey(app.Secret), option.WithMaxRetries(0))
	res, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiText)}})
	if err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	if res.Choices[0].Message.Content != piiText {
		t.Fatalf("answer = %q", res.Choices[0].Message.Content)
	}
	an := anthropic.NewClient(aoption.WithBaseURL(url), aoption.WithAPIKey(app.Secret), aoption.WithMaxRetries(0))
	st := an.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(piiText))}})
	var msg anthropic.Message
	for st.Next() {
		if err := msg.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil || msg.Content[0].Text != piiText {
		t.Fatalf("streamed answer = %+v, %v", msg.Content, err)
	}
	for _, r := range s.Requests() {
		if strings.Contains(string(r.Body), piiEmail) {
			t.Fatal("the provider received PII")
		}
	}

	status := func(err error) int {
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			return apiErr.StatusCode
		}
		return 0
	}
	chat := func(c openai.Client, text string, opts ...option.RequestOption) error {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}}, opts...)
		return err
	}
	wrong := openai.NewClient(option.WithBaseURL(url+"/v1"), option.WithAPIKey(identity.GenerateKey("dev")), option.WithMaxRetries(0))
	if got := status(chat(wrong, "hi")); got != 401 {
		t.Fatalf("unknown key = %d, want 401", got)
	}
	if got := status(chat(oa, "hi", option.WithHeader("x-bulwark-prompt", "unregistered@1"))); got != 403 {
		t.Fatalf("unregistered prompt = %d, want 403", got)
	}
	if got := status(chat(oa, "deploy with AKIAZ7QX3RT5LM2WP4VN")); got != 400 {
		t.Fatalf("secret = %d, want 400", got)
	}
}
