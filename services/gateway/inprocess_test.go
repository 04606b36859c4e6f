package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
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
	reg    *prometheus.Registry
	js     jetstream.JetStream
}

func newInProcess(tb testing.TB) *inProcess {
	tb.Helper()
	return newInProcessWith(tb, inProcessDeps{})
}

// inProcessDeps replaces the in-process wiring's dependencies where not nil.
type inProcessDeps struct {
	streamer gateway.RouterStreamer
	redactor gateway.Redactor
	// limiter and router wrap the real ones when set.
	limiter func(gateway.Limiter) gateway.Limiter
	router  func(gateway.Router) gateway.Router
}

// newInProcessWith wires the gateway with deps where they are set.
func newInProcessWith(tb testing.TB, deps inProcessDeps) *inProcess {
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
	reg := prometheus.NewRegistry()
	streamer := deps.streamer
	if streamer == nil {
		streamer = gateway.StreamerFromClient(routerv1connect.NewRouterServiceClient(gateway.InProcessClient(routerHTTP), "http://router"))
	}
	var limiter gateway.Limiter = rl.API
	if deps.limiter != nil {
		limiter = deps.limiter(limiter)
	}
	var rt gateway.Router = router
	if deps.router != nil {
		rt = deps.router(rt)
	}
	redactor := deps.redactor
	if redactor == nil {
		redactor = gateway.EngineRedactor(eng)
	}
	gw, err := gateway.New(gateway.Params{
		Config: cfg, Logger: log,
		Authenticator: id, Authorizer: id, Limiter: limiter, Redactor: redactor, Router: rt,
		Streamer: streamer,
		Hasher:   hasher, NATS: nc, JS: js, Registerer: reg,
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
	return &inProcess{url: platformtest.Serve(tb, srv.Handler()), simURL: simSrv.URL, sim: s, reg: reg, js: js}
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

// TestInProcess_StreamSendsWhatItHasBeforeWaitingForTheProvider holds the
// provider back after three events: the client must have all three (events
// already received are written together and flushed whenever the stream would
// wait) before the provider sends the rest.
func TestInProcess_StreamSendsWhatItHasBeforeWaitingForTheProvider(t *testing.T) {
	release := make(chan struct{})
	chunk := func(s string) []byte {
		return fmt.Appendf(nil, `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, s)
	}
	streamer := gateway.StreamerFromFunc(func(ctx context.Context, _ *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error {
		for i, w := range []string{"one ", "two ", "three "} {
			m := &routerv1.StreamCompleteResponse{Data: chunk(w)}
			if i == 0 {
				m.Status, m.Provider, m.ModelServed = 200, "sim", "gpt-4o"
			}
			if err := send(m); err != nil {
				return err
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		for _, d := range [][]byte{chunk("four"), []byte("[DONE]")} {
			if err := send(&routerv1.StreamCompleteResponse{Data: d}); err != nil {
				return err
			}
		}
		return nil
	})
	ip := newInProcessWith(t, inProcessDeps{streamer: streamer})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ip.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"count"}]}`))
	req.Header.Set("Authorization", "Bearer "+keyApp)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 3 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			got = append(got, d)
		}
	}
	if len(got) < 3 {
		t.Fatalf("the client got %d of the 3 events the provider had sent before pausing (%v): they waited for the provider", len(got), sc.Err())
	}
	close(release)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			got = append(got, d)
		}
	}
	if len(got) != 5 || !strings.Contains(got[3], "four") || got[4] != "[DONE]" {
		t.Fatalf("events after the pause: %q", got[3:])
	}
}

// TestInProcess_MeasuresEachStepAndTheGatewaysOwnTime checks the gateway's
// metrics: every call counted by how it ended, each step of the calls that
// reached it observed once, and the gateway's own time within the whole call.
func TestInProcess_MeasuresEachStepAndTheGatewaysOwnTime(t *testing.T) {
	ip := newInProcess(t)
	c := openai.NewClient(option.WithBaseURL(ip.url+"/v1"), option.WithAPIKey(keyApp), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiText)}}
	start := time.Now()
	if _, err := c.Chat.Completions.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start)
	st := c.Chat.Completions.NewStreaming(ctx, params)
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	stranger := openai.NewClient(option.WithBaseURL(ip.url+"/v1"), option.WithAPIKey("bk_not_a_key"), option.WithMaxRetries(0))
	if _, err := stranger.Chat.Completions.New(ctx, params); err == nil {
		t.Fatal("an unknown key was served")
	}
	// Audit events (and the counter beside them) are recorded in the background.
	deadline := time.Now().Add(10 * time.Second)
	for (metricValue(t, ip.reg, "bulwark_gateway_calls_total", "decision", "denied_auth") < 1 ||
		metricValue(t, ip.reg, "bulwark_gateway_calls_total", "decision", "allowed") < 2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := metricValue(t, ip.reg, "bulwark_gateway_calls_total", "decision", "allowed"); n != 2 {
		t.Fatalf("allowed calls counted %v; want 2", n)
	}
	if n := metricValue(t, ip.reg, "bulwark_gateway_calls_total", "decision", "denied_auth"); n != 1 {
		t.Fatalf("unauthenticated calls counted %v; want 1", n)
	}
	for stage, want := range map[string]float64{"prepare": 2, "reserve": 2, "redact": 2, "provider": 2, "restore": 1} {
		if n := metricValue(t, ip.reg, "bulwark_gateway_stage_duration_seconds", "stage", stage); n != want {
			t.Fatalf("stage %s observed %v times; want %v", stage, n, want)
		}
	}
	if n := metricValue(t, ip.reg, "bulwark_gateway_overhead_seconds", "streamed", "true"); n != 1 {
		t.Fatalf("streamed overhead observed %v times; want 1", n)
	}
	own := metricSum(t, ip.reg, "bulwark_gateway_overhead_seconds", "streamed", "false")
	if own <= 0 || own > whole.Seconds() {
		t.Fatalf("the gateway's own time %.6fs is not within the whole call's %v", own, whole)
	}
}

// metricValue is a counter's value, or a histogram's observation count, for
// the series of name whose label has value.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	if m := findMetric(t, reg, name, label, value); m != nil {
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	return 0
}

func metricSum(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return findMetric(t, reg, name, label, value).GetHistogram().GetSampleSum()
}

func findMetric(t *testing.T, reg *prometheus.Registry, name, label, value string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m
				}
			}
		}
	}
	return nil
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

// panicky panics in Redact on texts that ask for it, and in Reserve, Settle
// and Complete while armed; otherwise it is the real redactor, limiter and
// router.
type panicky struct {
	gateway.Redactor
	gateway.Limiter
	gateway.Router
	reserve, settle, complete *atomic.Bool
}

func (p panicky) Redact(ctx context.Context, req *connect.Request[redactionv1.RedactRequest]) (*connect.Response[redactionv1.RedactResponse], error) {
	for _, s := range req.Msg.GetSegments() {
		if strings.Contains(s.GetText(), "panic now") {
			panic("redactor bug near " + s.GetText())
		}
	}
	return p.Redactor.Redact(ctx, req)
}

func (p panicky) Reserve(ctx context.Context, req *connect.Request[ratelimitv1.ReserveRequest]) (*connect.Response[ratelimitv1.ReserveResponse], error) {
	if p.reserve.Load() {
		panic("limiter bug")
	}
	return p.Limiter.Reserve(ctx, req)
}

func (p panicky) Complete(ctx context.Context, req *connect.Request[routerv1.CompleteRequest]) (*connect.Response[routerv1.CompleteResponse], error) {
	if p.complete.Load() {
		panic("router bug")
	}
	return p.Router.Complete(ctx, req)
}

func (p panicky) Settle(ctx context.Context, req *connect.Request[ratelimitv1.SettleRequest]) (*connect.Response[ratelimitv1.SettleResponse], error) {
	if p.settle.Load() {
		panic("limiter bug")
	}
	return p.Limiter.Settle(ctx, req)
}

// The all-in-one calls the redaction engine, the rate limiter and the router
// in the gateway's process: a panic in one must fail the request (503 for
// redaction and ratelimit, 502 for the router; the text kept out of the
// answer) with its audit record, not end the process; one in the settlement
// after the answer must not end it either.
func TestInProcess_APanicInADependencyFailsTheRequestNotTheProcess(t *testing.T) {
	eng, err := engine.New(engine.Params{HashKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	p := &panicky{Redactor: gateway.EngineRedactor(eng), reserve: new(atomic.Bool), settle: new(atomic.Bool), complete: new(atomic.Bool)}
	ip := newInProcessWith(t, inProcessDeps{redactor: p,
		limiter: func(l gateway.Limiter) gateway.Limiter { p.Limiter = l; return p },
		router:  func(r gateway.Router) gateway.Router { p.Router = r; return p }})
	c := openai.NewClient(option.WithBaseURL(ip.url+"/v1"), option.WithAPIKey(keyApp), option.WithMaxRetries(0))
	ask := func(text string) (*openai.ChatCompletion, error) {
		return c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}})
	}
	failed := func(what string, err error, status int) {
		t.Helper()
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
			t.Fatalf("a panicking %s gave %v; want %d", what, err, status)
		}
		if strings.Contains(apiErr.RawJSON(), "jane.doe") || strings.Contains(apiErr.RawJSON(), "panic") {
			t.Fatalf("the error quotes the request or the panic: %s", apiErr.RawJSON())
		}
	}
	_, err = ask("please panic now, jane.doe@example.com")
	failed("redactor", err, http.StatusServiceUnavailable)
	p.reserve.Store(true)
	_, err = ask("jane.doe@example.com")
	failed("limiter", err, http.StatusServiceUnavailable)
	p.reserve.Store(false)
	p.complete.Store(true)
	_, err = ask("jane.doe@example.com")
	failed("router", err, http.StatusBadGateway)
	p.complete.Store(false)
	p.settle.Store(true)
	if _, err := ask(piiText); err != nil {
		t.Fatalf("a panicking settlement (after the answer) failed the call: %v", err)
	}
	p.settle.Store(false)
	res, err := ask(piiText)
	if err != nil {
		t.Fatalf("the next request after the panics: %v", err)
	}
	if got := res.Choices[0].Message.Content; got != piiText {
		t.Fatalf("answer = %q", got)
	}
	// Every call has its one audit record, the one whose settlement
	// panicked too, flagged.
	var calls, flagged int
	for id, evs := range auditEvents(t, ip.js, 5) {
		if len(evs) != 1 {
			t.Fatalf("request %s has %d audit events", id, len(evs))
		}
		calls++
		if slices.Contains(evs[0].GetAnomalyFlags(), "settle_failed") {
			flagged++
		}
	}
	if calls != 5 || flagged != 1 {
		t.Fatalf("%d calls recorded, %d flagged settle_failed; want 5 and 1", calls, flagged)
	}
}
