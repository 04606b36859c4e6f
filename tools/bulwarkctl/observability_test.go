package main

// Tracing and metrics across the whole stack: every service mounted in this
// process as the all-in-one does, but each hop made through its Connect client
// (so the trace crosses real RPC boundaries), with an in-memory span exporter
// and one Prometheus registry scraped over HTTP.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
	"github.com/bulwarkhq/bulwark/services/redaction"
	"github.com/bulwarkhq/bulwark/services/router"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

type observedStack struct {
	*stack
	spans *tracetest.InMemoryExporter
	reg   *prometheus.Registry
}

// startObservedStack is startStack with tracing and metrics on every service,
// and redaction called over Connect rather than as an in-process engine.
func startObservedStack(t *testing.T) *observedStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reg := prometheus.NewRegistry()
	rpc := platform.NewRPCMetrics(reg)
	clientOpts, err := platform.ClientOptions(tp)
	if err != nil {
		t.Fatal(err)
	}
	nc, js := platformtest.NATS(t)
	rdb, prefix := platformtest.Redis(t)
	vs := platformtest.Vault(t)

	ic := config[identity.Config](t)
	ic.PepperCreate = true
	idn, err := identity.New(ctx, identity.Params{Config: ic, Logger: log, NATS: nc, JetStream: js, Vault: vs.Client,
		HandlerOptions: platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: rpc, TracerProvider: tp})})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	sysKey := identity.GenerateKey("dev")
	if _, err := idn.Bootstrap(ctx, identity.BootstrapParams{PrincipalID: "svc_test_system", Roles: []string{"system"}, Key: sysKey}); err != nil {
		t.Fatalf("system principal: %v", err)
	}
	idMux := http.NewServeMux()
	for _, s := range idn.Services {
		idMux.Handle(s.Path, s.Handler)
	}
	withKey := append(append([]connect.ClientOption{}, clientOpts...), connect.WithInterceptors(bearer(sysKey)))
	idClient := identityv1connect.NewIdentityServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process", clientOpts...)
	policyClient := identityv1connect.NewPolicyServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process", withKey...)
	// The services' own authorization calls stay untraced, so the trace shows the request's hops.
	azID := identityv1connect.NewIdentityServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process")
	azPolicy := identityv1connect.NewPolicyServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process", connect.WithInterceptors(bearer(sysKey)))
	az, err := authz.NewInterceptor(authz.InterceptorParams{Identity: azID, Policy: azPolicy, ServiceCredential: sysKey, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: rpc, Auth: az.AuthFunc(), TracerProvider: tp})
	plain := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: rpc, TracerProvider: tp})

	ac := config[audit.Config](t)
	ac.IdentityURL, ac.ServiceCredential, ac.CheckpointInterval = "in-process", platform.Secret(sysKey), 100*time.Millisecond
	aud, err := audit.New(ctx, audit.Params{Config: ac, Logger: log, JS: js, Vault: vs.Client, HandlerOptions: opts, Registry: reg, TracerProvider: tp})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	runBG(t, cancel, func() error { return aud.Run(ctx) })

	red, err := redaction.New(redaction.Params{Config: config[redaction.Config](t), Logger: log, HandlerOptions: opts})
	if err != nil {
		t.Fatalf("redaction: %v", err)
	}
	lc := config[ratelimit.Config](t)
	lc.KeyPrefix = prefix
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lc, Logger: log, Redis: rdb, JS: js, HandlerOptions: opts, Registerer: reg, TracerProvider: tp})
	if err != nil {
		t.Fatalf("ratelimit: %v", err)
	}
	runBG(t, cancel, func() error { return rl.Run(ctx) })

	s := sim.New(sim.Params{})
	for _, prov := range []string{"openai", "anthropic", "azure"} {
		if _, err := vs.Client.KVv2("secret").Put(ctx, "bulwark/dev/providers/"+prov, map[string]any{"api_key": "sim-dev-" + prov + "-initial"}); err != nil {
			t.Fatal(err)
		}
	}
	rtc := config[router.Config](t)
	rtc.SimulatorURL, rtc.KeyTTL = "http://provsim.in-process", 50*time.Millisecond
	rt, err := router.New(router.Params{Config: rtc, Logger: log, Vault: vs.Client, JetStream: js, HandlerOptions: opts,
		HTTPClient: gateway.InProcessClient(s), TracerProvider: tp, Registerer: reg})
	if err != nil {
		t.Fatalf("router: %v", err)
	}

	gc := config[gateway.Config](t)
	gc.SpoolDir = t.TempDir()
	hasher, err := payloadhash.LoadFromVault(ctx, payloadhash.VaultParams{Client: vs.Client, Mount: gc.HMACMount, Path: gc.HMACPath, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	routerClient := routerv1connect.NewRouterServiceClient(gateway.InProcessClient(rt.Handler), "http://router.in-process", withKey...)
	gw, err := gateway.New(gateway.Params{
		Config: gc, Logger: log, Authenticator: idClient, Authorizer: policyClient,
		Limiter:  ratelimitv1connect.NewRateLimitServiceClient(gateway.InProcessClient(rl.Handler), "http://ratelimit.in-process", withKey...),
		Redactor: redactionv1connect.NewRedactionServiceClient(gateway.InProcessClient(red.Handler), "http://redaction.in-process", withKey...),
		Router:   routerClient, Streamer: gateway.StreamerFromClient(routerClient),
		Hasher: hasher, NATS: nc, JS: js, HandlerOptions: plain, TracerProvider: tp,
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	runBG(t, cancel, func() error { gw.Run(ctx); return nil })

	boot, err := idn.Bootstrap(ctx, identity.BootstrapParams{})
	if err != nil || boot.Secret == "" {
		t.Fatalf("bootstrap admin: %v (secret returned: %t)", err, boot.Secret != "")
	}
	services := append([]platform.Service{}, idn.Services...)
	services = append(services,
		platform.Service{Name: red.Name, Path: red.Path, Handler: red.Handler},
		platform.Service{Name: rl.Name, Path: rl.Path, Handler: rl.Handler},
		platform.Service{Name: rt.Name, Path: rt.Path, Handler: rt.Handler},
		platform.Service{Name: aud.Name, Path: aud.Path, Handler: aud.Handler},
		platform.Service{Name: gw.Name, Path: gw.Path, Handler: gw.Handler})
	srv, err := platform.NewServer(platform.ServerParams{Name: "bulwark-test", Logger: log, Services: services, Routes: gw.Routes(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	url := platformtest.Serve(t, srv.Handler())
	hc := platform.HTTPClient()
	return &observedStack{
		stack: &stack{URL: url, AdminKey: boot.Secret, SystemKey: sysKey, Sim: s, Vault: vs,
			Router:   routerv1connect.NewRouterServiceClient(hc, url, connect.WithInterceptors(bearer(sysKey))),
			Identity: identityv1connect.NewIdentityServiceClient(hc, url)},
		spans: spans, reg: reg,
	}
}

// chatBody sends one chat completion with the given user content and W3C trace parent.
func (s *observedStack) chatBody(t *testing.T, key, content, traceparent string) (int, string) {
	t.Helper()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + content + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("x-request-id")
}

func TestTracing_OneChatCompletionIsOneTraceAcrossEveryServiceTheProviderAndTheAuditConsumer(t *testing.T) {
	s := startObservedStack(t)
	s.ok(t, "principals", "create", "support", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_traced", "--role", "app", "--env", "dev", "--team", "support")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_traced", "--env", "dev"))
	s.spans.Reset()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	code, reqID := s.chatBody(t, secret, "hello", "00-"+traceID+"-00f067aa0ba902b7-01")
	if code != 200 {
		t.Fatalf("chat: %d", code)
	}
	want := map[string]string{
		"gateway HTTP":   "POST /v1/chat/completions",
		"identity":       "bulwark.identity.v1.IdentityService/Authenticate",
		"policy":         "bulwark.identity.v1.PolicyService/Authorize",
		"ratelimit":      "bulwark.ratelimit.v1.RateLimitService/Reserve",
		"redaction":      "bulwark.redaction.v1.RedactionService/Redact",
		"router":         "bulwark.router.v1.RouterService/Complete",
		"provider call":  "provider openai",
		"audit consumer": "audit ingest bulwark.audit.v1.llm_call",
		"anomaly count":  "ratelimit count bulwark.audit.v1.llm_call",
	}
	var names []string
	platformtest.Until(t, 20*time.Second, "every hop's span in the caller's trace", func() bool {
		names = names[:0]
		seen := map[string]bool{}
		for _, sp := range s.spans.GetSpans() {
			if sp.SpanContext.TraceID().String() != traceID {
				continue
			}
			seen[sp.Name] = true
			names = append(names, sp.Name+" ("+sp.SpanKind.String()+")")
		}
		for _, n := range want {
			if !seen[n] {
				return false
			}
		}
		return true
	})
	// Server spans of each RPC exist (not only the gateway's client side).
	servers := map[string]bool{}
	for _, sp := range s.spans.GetSpans() {
		if sp.SpanContext.TraceID().String() == traceID && sp.SpanKind == trace.SpanKindServer {
			servers[sp.Name] = true
		}
	}
	for hop, n := range want {
		if strings.HasPrefix(n, "bulwark.") && !servers[n] {
			t.Errorf("%s: no server span %q in the trace; spans: %v", hop, n, names)
		}
	}
	// The audit record of the request carries the same trace id.
	var recs []recordJSON
	platformtest.Until(t, 20*time.Second, "the request's audit record", func() bool {
		recs = s.query(t, "--request-id", reqID)
		return len(recs) == 1
	})
	raw := s.ok(t, "audit", "query", "--json", "--request-id", reqID)
	if !strings.Contains(raw, traceID) {
		t.Fatalf("the audit record does not carry trace id %s:\n%s", traceID, raw)
	}
}

func TestMetrics_ScrapeAfterAPIILadenRequestHoldsNoPIIOrKeyMaterial(t *testing.T) {
	s := startObservedStack(t)
	s.ok(t, "principals", "create", "support", "--kind", "team", "--env", "dev")
	s.ok(t, "principals", "create", "svc_metrics", "--role", "app", "--env", "dev", "--team", "support")
	secret := oneSecret(t, s.ok(t, "keys", "create", "--principal", "svc_metrics", "--env", "dev"))
	pii := []string{"jane.doe@example.com", "536-90-4399", "555-0132", "Jane Doe"}
	content := `Reply to our customer.\nName: Jane Doe\nEmail: jane.doe@example.com\nPhone: (415) 555-0132\nSSN: 536-90-4399`
	if code, _ := s.chatBody(t, secret, content, ""); code != 200 {
		t.Fatalf("chat: %d", code)
	}
	// A refused call too: its labels must not carry the bad credential.
	if code, _ := s.chatBody(t, "bk_dev_notarealkeybutsecretlooking0123456789", content, ""); code != 401 {
		t.Fatalf("chat with an unknown key: %d", code)
	}
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	scrape := string(b)
	for _, name := range []string{"bulwark_rpc_requests_total", "bulwark_router_provider_requests_total", "bulwark_ratelimit_decisions_total"} {
		if !strings.Contains(scrape, name) {
			t.Fatalf("the scrape lacks %s", name)
		}
	}
	forbidden := append(pii, secret, s.AdminKey, s.SystemKey, "bk_dev_notarealkey", "sim-dev-openai-initial")
	for _, f := range forbidden {
		if strings.Contains(scrape, f) {
			t.Errorf("/metrics holds sensitive value at offset %d", strings.Index(scrape, f))
		}
	}
	// No label value looks like an email address or an API key of any environment.
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`[\w.+-]+@[\w-]+\.[\w.]+`), regexp.MustCompile(`bk_[a-z]+_[A-Za-z0-9_-]{16,}`)} {
		if m := re.FindString(scrape); m != "" {
			t.Errorf("/metrics holds a value matching %s", re)
		}
	}
}

// runBG runs f until the test ends, then cancels its context and waits for it.
func runBG(t *testing.T, cancel context.CancelFunc, f func() error) {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("background task: %v", err)
		}
	})
}
