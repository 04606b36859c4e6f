package main

// stack mounts every Bulwark service in this test process on one real HTTP/2
// (h2c) server, the way the all-in-one binary does: identity, audit,
// ratelimit, router (calling the provider simulator in-process) and the
// gateway, over an embedded NATS with JetStream, the real Redis and a real
// Vault dev server. bulwarkctl reaches them over the network through the
// generated Connect clients, exactly as against a deployment.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
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

type stack struct {
	URL      string
	AdminKey string
	// SystemKey is the services' own credential in dev (role system).
	SystemKey string
	Sim       *sim.Sim
	Vault     *platformtest.VaultServer
	Router    routerv1connect.RouterServiceClient
	Identity  identityv1connect.IdentityServiceClient
	// AdminID is the bootstrap admin's principal.
	AdminID string
	idn     *identity.Service
}

// envKey gives an existing principal a key for env the way the operator
// bootstraps one (a key acts only in its own environment, so a dev key cannot
// issue a staging key).
func (s *stack) envKey(t *testing.T, principal, env string) string {
	t.Helper()
	key := identity.GenerateKey(env)
	if _, err := s.idn.Bootstrap(context.Background(), identity.BootstrapParams{PrincipalID: principal, Key: key}); err != nil {
		t.Fatalf("key for %s in %s: %v", principal, env, err)
	}
	return key
}

// config fills a service config with its defaults (no BULWARK_* variable of the test environment applies).
func config[T any](t *testing.T) T {
	var c T
	if err := platform.LoadConfig("BULWARKCTL_TEST_UNSET_", &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	nc, js := platformtest.NATS(t)
	rdb, prefix := platformtest.Redis(t)
	vs := platformtest.Vault(t)

	ic := config[identity.Config](t)
	ic.PepperCreate = true
	idn, err := identity.New(ctx, identity.Params{Config: ic, Logger: log, NATS: nc, JetStream: js, Vault: vs.Client})
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
	idClient := identityv1connect.NewIdentityServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process")
	policyClient := identityv1connect.NewPolicyServiceClient(gateway.InProcessClient(idMux), "http://identity.in-process",
		connect.WithInterceptors(bearer(sysKey)))
	az, err := authz.NewInterceptor(authz.InterceptorParams{Identity: idClient, Policy: policyClient, ServiceCredential: sysKey, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Auth: az.AuthFunc()})
	plain := platform.HandlerOptions(platform.InterceptorParams{Logger: log})

	ac := config[audit.Config](t)
	ac.IdentityURL, ac.ServiceCredential, ac.CheckpointInterval = "in-process", platform.Secret(sysKey), 100*time.Millisecond
	aud, err := audit.New(ctx, audit.Params{Config: ac, Logger: log, JS: js, Vault: vs.Client, HandlerOptions: opts})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	goBG(t, ctx, cancel, aud.Run)

	red, err := redaction.New(redaction.Params{Config: config[redaction.Config](t), Logger: log, HandlerOptions: opts})
	if err != nil {
		t.Fatalf("redaction: %v", err)
	}
	lc := config[ratelimit.Config](t)
	lc.KeyPrefix = prefix
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lc, Logger: log, Redis: rdb, JS: js, HandlerOptions: opts})
	if err != nil {
		t.Fatalf("ratelimit: %v", err)
	}
	goBG(t, ctx, cancel, rl.Run)

	s := sim.New(sim.Params{})
	for _, prov := range []string{"openai", "anthropic", "azure"} {
		if _, err := vs.Client.KVv2("secret").Put(ctx, "bulwark/dev/providers/"+prov, map[string]any{"api_key": "sim-dev-" + prov + "-initial"}); err != nil {
			t.Fatal(err)
		}
	}
	rtc := config[router.Config](t)
	rtc.SimulatorURL, rtc.KeyTTL = "http://provsim.in-process", 50*time.Millisecond
	rt, err := router.New(router.Params{Config: rtc, Logger: log, Vault: vs.Client, JetStream: js, HandlerOptions: opts,
		HTTPClient: gateway.InProcessClient(s)})
	if err != nil {
		t.Fatalf("router: %v", err)
	}

	gc := config[gateway.Config](t)
	gc.SpoolDir = t.TempDir()
	hasher, err := payloadhash.LoadFromVault(ctx, payloadhash.VaultParams{Client: vs.Client, Mount: gc.HMACMount, Path: gc.HMACPath, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	withKey := connect.WithInterceptors(bearer(sysKey))
	routerClient := routerv1connect.NewRouterServiceClient(gateway.InProcessClient(rt.Handler), "http://router.in-process", withKey)
	gw, err := gateway.New(gateway.Params{
		Config: gc, Logger: log, Authenticator: idClient, Authorizer: policyClient,
		Limiter:  ratelimitv1connect.NewRateLimitServiceClient(gateway.InProcessClient(rl.Handler), "http://ratelimit.in-process", withKey),
		Redactor: gateway.EngineRedactor(red.Engine), Router: routerClient, Streamer: gateway.StreamerFromClient(routerClient),
		Hasher: hasher, NATS: nc, JS: js, HandlerOptions: plain,
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	goBG(t, ctx, cancel, func(ctx context.Context) error { gw.Run(ctx); return nil })

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
	srv, err := platform.NewServer(platform.ServerParams{Name: "bulwark-test", Logger: log, Services: services, Routes: gw.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	url := platformtest.Serve(t, srv.Handler())
	hc := platform.HTTPClient()
	return &stack{URL: url, AdminKey: boot.Secret, SystemKey: sysKey, Sim: s, Vault: vs, AdminID: boot.Principal.GetId(), idn: idn,
		Router:   routerv1connect.NewRouterServiceClient(hc, url, withKey),
		Identity: identityv1connect.NewIdentityServiceClient(hc, url)}
}

// goBG runs a service's background loop until the test ends (cleanup cancels ctx, then waits).
func goBG(t *testing.T, ctx context.Context, cancel context.CancelFunc, f func(context.Context) error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			t.Errorf("background task: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// ctl runs bulwarkctl in-process against the stack as key; it returns stdout,
// stderr and the exit code.
func (s *stack) ctl(t *testing.T, key, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var outB, errB bytes.Buffer
	full := append([]string{"--url", s.URL, "--key", key}, args...)
	code := run(full, strings.NewReader(stdin), &outB, &errB)
	return outB.String(), errB.String(), code
}

// ok runs bulwarkctl as the admin and fails the test unless it exits 0.
func (s *stack) ok(t *testing.T, args ...string) string {
	t.Helper()
	o, e, code := s.ctl(t, s.AdminKey, "", args...)
	if code != 0 {
		t.Fatalf("bulwarkctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, o, e)
	}
	return o
}

// complete routes one OpenAI chat call through the router as the system principal.
func (s *stack) complete(ctx context.Context, model string) (*routerv1.CompleteResponse, error) {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hello"}]}`
	res, err := s.Router.Complete(ctx, connect.NewRequest(&routerv1.CompleteRequest{
		Call: &routerv1.Call{Environment: "dev", Format: routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT, Body: []byte(body)}}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}
