package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// inProcess wires the gateway as the all-in-one binary does: unary
// dependencies are handler implementations passed directly, redaction is the
// engine in this process, streaming goes through InProcessClient, and audit
// events go to a real (embedded) JetStream.
type inProcess struct {
	url    string
	simURL string
	sim    *sim.Sim
}

func newInProcess(tb testing.TB) *inProcess {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	nc, js := platformtest.NATS(tb)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"},
		Duplicates: 10 * time.Minute, Storage: jetstream.FileStorage}); err != nil {
		tb.Fatal(err)
	}
	rdb, prefix := platformtest.Redis(tb)
	s := sim.New(sim.Params{})
	s.SetRecording(false)
	simSrv := httptest.NewServer(s)
	tb.Cleanup(simSrv.Close)
	id := &testIdentity{version: "1", prompts: map[string]string{}, keys: map[string]testKey{keyApp: {principal: "svc-app", team: "team-a", env: "dev", limit: 1 << 40}}}
	var lcfg ratelimit.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_RATELIMIT_", &lcfg); err != nil {
		tb.Fatal(err)
	}
	lcfg.KeyPrefix = prefix
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lcfg, Logger: log, Redis: rdb})
	if err != nil {
		tb.Fatal(err)
	}
	router := &testRouter{simURL: simSrv.URL, models: []string{"gpt-4o"}, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	_, routerHTTP := routerv1connect.NewRouterServiceHandler(router)
	eng, err := engine.New(engine.Params{HashKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		tb.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	hasher, err := payloadhash.New(key)
	if err != nil {
		tb.Fatal(err)
	}
	var cfg gateway.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_TEST_", &cfg); err != nil {
		tb.Fatal(err)
	}
	cfg.SpoolDir = tb.TempDir()
	gw, err := gateway.New(gateway.Params{
		Config: cfg, Logger: log,
		Authenticator: id, Authorizer: id, Limiter: rl.API, Redactor: gateway.EngineRedactor(eng), Router: router,
		Streamer: gateway.StreamerFromClient(routerv1connect.NewRouterServiceClient(gateway.InProcessClient(routerHTTP), "http://router")),
		Hasher:   hasher, NATS: nc, JS: js,
	})
	if err != nil {
		tb.Fatal(err)
	}
	go gw.Run(ctx)
	tb.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		_ = gw.Shutdown(sctx)
	})
	srv, err := platform.NewServer(platform.ServerParams{Name: "bulwark", Logger: log,
		Services: []platform.Service{{Name: gw.Name, Path: gw.Path, Handler: gw.Handler}}, Routes: gw.Routes()})
	if err != nil {
		tb.Fatal(err)
	}
	return &inProcess{url: platformtest.Serve(tb, srv.Handler()), simURL: simSrv.URL, sim: s}
}

func TestInProcess_StreamThroughInProcessRouterClientRestoresPII(t *testing.T) {
	ip := newInProcess(t)
	c := openai.NewClient(option.WithBaseURL(ip.url+"/v1"), option.WithAPIKey(keyApp), option.WithMaxRetries(0))
	st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiText)},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != piiText {
		t.Fatalf("answer = %q", got)
	}
	if acc.Usage.PromptTokens == 0 {
		t.Fatal("the usage chunk the client asked for was dropped")
	}
}

// BenchmarkChatCompletion compares one non-streaming chat completion sent
// straight to the simulator with the same call through the in-process gateway
// (auth and policy cached, Redis reservation and settlement, redaction of a
// prompt holding an e-mail address and a phone number, restore, JetStream-acked
// audit record). Everything shares the machine's cores: compare the two
// sub-benchmarks of one run, not absolute times.
func BenchmarkChatCompletion(b *testing.B) {
	ip := newInProcess(b)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"` + piiText + `"}]}`)
	hc := platform.HTTPClient()
	run := func(b *testing.B, url string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+keyApp)
				req.Header.Set("Content-Type", "application/json")
				res, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || !strings.Contains(string(out), "jane.doe@example.com") {
					b.Fatalf("status %d: %s", res.StatusCode, out)
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, ip.simURL) })
	b.Run("gateway", func(b *testing.B) { run(b, ip.url) })
}
