// Package allinone assembles every Bulwark service in one process: identity,
// redaction, ratelimit, router, audit and the gateway are mounted on one h2c
// port, and the gateway reaches the others through their generated Connect
// client interfaces served in-process (no sockets between services). With no
// configuration it runs on embedded defaults: an embedded NATS server with
// JetStream under the data directory, the provider simulator as every
// provider, Redis at 127.0.0.1:6379 or an embedded Redis-protocol server, and
// Vault from VAULT_ADDR, the project's bin/vault, or a development secret file.
package allinone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"
	vault "github.com/hashicorp/vault/api"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
	"github.com/bulwarkhq/bulwark/services/redaction"
	"github.com/bulwarkhq/bulwark/services/router"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// Config is the all-in-one's own configuration, read from BULWARK_* variables.
// Each service's settings are still read from its own BULWARK_<SVC>_* variables;
// the all-in-one overrides only how they reach NATS, Redis and Vault.
type Config struct {
	// Addr is where the gateway and every service listen.
	Addr string `env:"ADDR" default:":8080"`
	// DataDir holds the embedded NATS store, the audit spool and development secrets.
	DataDir   string `env:"DATA_DIR" default:".data"`
	LogFormat string `env:"LOG_FORMAT" default:"text"`
	LogLevel  string `env:"LOG_LEVEL" default:"info"`
	// RedisAddr of a real Redis; empty tries 127.0.0.1:6379, then an embedded one.
	RedisAddr string `env:"REDIS_ADDR"`
	// RedisCluster says RedisAddr lists Redis Cluster nodes.
	RedisCluster bool `env:"REDIS_CLUSTER" default:"false"`
	// RedisMasterName is the Sentinel name of the primary; RedisAddr then lists Sentinels.
	RedisMasterName string `env:"REDIS_MASTER_NAME"`
	// NATSURL of a real NATS with JetStream; empty embeds one under DataDir.
	NATSURL string `env:"NATS_URL"`
	// NATSPort, when set, lets other processes (bulwarkctl) reach the embedded NATS.
	NATSPort int `env:"NATS_PORT"`
	// VaultBin is the Vault binary to run when VAULT_ADDR is unset; "none" skips it.
	VaultBin string `env:"VAULT_BIN"`
	// BootstrapAdminKey, when set, is the first admin's key instead of a generated one.
	BootstrapAdminKey platform.Secret `env:"BOOTSTRAP_ADMIN_KEY"`
	// ShutdownTimeout bounds draining requests and the audit spool.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"30s"`

	// VaultAddr, VaultToken, VaultRoleID and VaultSecretID come from Vault's
	// own variables (VAULT_ADDR, VAULT_TOKEN, VAULT_ROLE_ID, VAULT_SECRET_ID).
	VaultAddr     string
	VaultToken    platform.Secret
	VaultRoleID   string
	VaultSecretID platform.Secret
}

// LoadConfig reads Config from the environment.
func LoadConfig() (Config, error) {
	var c Config
	if err := platform.LoadConfig("BULWARK_", &c); err != nil {
		return c, err
	}
	c.VaultAddr, c.VaultToken = os.Getenv("VAULT_ADDR"), platform.Secret(os.Getenv("VAULT_TOKEN"))
	c.VaultRoleID, c.VaultSecretID = os.Getenv("VAULT_ROLE_ID"), platform.Secret(os.Getenv("VAULT_SECRET_ID"))
	return c, nil
}

// Params configure Start.
type Params struct {
	Config Config
	Logger *slog.Logger
	// Listener, when set, is used instead of listening on Config.Addr (tests).
	Listener net.Listener
	// SimParams configure the built-in provider simulator.
	SimParams sim.Params
}

// Instance is a started all-in-one Bulwark.
type Instance struct {
	// URL is the base URL of the gateway and every service.
	URL string
	// AdminKey is the bootstrap admin's key when it was created or supplied on this start.
	AdminKey string
	// AdminCreated is true when this start created the admin.
	AdminCreated bool
	// Sim is the built-in provider simulator (nil when a catalog file names real providers).
	Sim *sim.Sim
	// Gateway is the mounted gateway.
	Gateway *gateway.Gateway
	// RedisAddr, NATS and VaultKind say which dependencies are in use.
	RedisAddr string
	NATS      string
	VaultKind string
	// Vault is a client for the Vault in use (tests seed keys with it).
	Vault *vault.Client

	cfg      Config
	log      *slog.Logger
	srv      *platform.Server
	ln       net.Listener
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	closer   closer
}

// Start builds every service and binds the listener; Run serves.
func Start(ctx context.Context, p Params) (inst *Instance, err error) {
	cfg, log := p.Config, p.Logger
	if log == nil {
		return nil, errors.New("allinone: Logger is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	in := &Instance{cfg: cfg, log: log}
	in.bgCtx, in.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	in.closer.add(in.bgCancel)
	defer func() {
		if err != nil {
			in.bgCancel()
			in.bg.Wait()
			in.closer.run()
		}
	}()

	nc, js, natsWhere, err := openNATS(ctx, cfg, log, &in.closer)
	if err != nil {
		return nil, err
	}
	in.NATS = natsWhere
	rdb, redisWhere, err := openRedis(ctx, cfg, log, &in.closer)
	if err != nil {
		return nil, err
	}
	in.RedisAddr = redisWhere
	vi, err := openVault(ctx, cfg, log, &in.closer)
	if err != nil {
		return nil, err
	}
	in.VaultKind, in.Vault = vi.Kind, vi.Client

	reg := platform.NewRegistry()
	metrics := platform.NewRPCMetrics(reg)
	// Tracing as in split mode (BULWARK_TRACES_EXPORTER; none by default): one
	// trace per request across every service hop, the provider call and the audit consumer.
	tp, stopTracing, err := platform.StartTracing(ctx, "bulwark", log)
	if err != nil {
		return nil, err
	}
	in.closer.add(stopTracing)
	// plain: identity (which authorizes its own calls) and the gateway (whose pipeline authenticates).
	plain := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: metrics, TracerProvider: tp})

	var ic identity.Config
	if err := platform.LoadConfig("BULWARK_IDENTITY_", &ic); err != nil {
		return nil, err
	}
	if _, set := os.LookupEnv("BULWARK_IDENTITY_PEPPER_CREATE"); !set {
		ic.PepperCreate = true // a fresh install makes its own pepper
	}
	var gc gateway.Config
	if err := platform.LoadConfig("BULWARK_GATEWAY_", &gc); err != nil {
		return nil, err
	}
	// The services' own credential (role system): one internal key per environment
	// (a key acts only in its environment), kept in Vault; identity learns them below.
	sysKeys, err := loadSystemKeys(ctx, vi.Client, ic.Environments)
	if err != nil {
		return nil, fmt.Errorf("internal credentials: %w", err)
	}
	sysKey := sysKeys[gc.DefaultEnvironment]
	// identity is built after audit (which creates the stream identity reports to);
	// calls reach it through this handler once it exists.
	var identityHandler http.Handler = http.NotFoundHandler()
	toIdentity := gateway.InProcessClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { identityHandler.ServeHTTP(w, r) }))
	traced, err := platform.ClientOptions(tp)
	if err != nil {
		return nil, err
	}
	idClient := identityv1connect.NewIdentityServiceClient(toIdentity, "http://identity.in-process", traced...)
	policyClient := keyedPolicy{PolicyServiceClient: identityv1connect.NewPolicyServiceClient(toIdentity, "http://identity.in-process", traced...),
		keys: sysKeys, def: gc.DefaultEnvironment}
	// Every other service is on the public port too, so it enforces identity's
	// permission table exactly as in a split deployment.
	az, err := authz.NewInterceptor(authz.InterceptorParams{Identity: idClient, Policy: policyClient, ServiceCredential: sysKey, Logger: log})
	if err != nil {
		return nil, err
	}
	opts := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: metrics, Auth: az.AuthFunc(), TracerProvider: tp})

	// audit first: it creates the audit stream the others publish to and read from.
	var ac audit.Config
	if err := platform.LoadConfig("BULWARK_AUDIT_", &ac); err != nil {
		return nil, err
	}
	// Each service's own authorizer is the in-process one above (opts); these
	// fields only satisfy the split-mode validation.
	if !ac.AuthDisabled {
		ac.IdentityURL, ac.ServiceCredential = inProcessIdentity, platform.Secret(sysKey)
	}
	aud, err := audit.New(ctx, audit.Params{Config: ac, Logger: log.With("service", "audit"), JS: js, Vault: vi.Client, HandlerOptions: opts, TracerProvider: tp})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	in.goBG("audit", aud.Run)

	idn, err := identity.New(in.bgCtx, identity.Params{Config: ic, Logger: log.With("service", "identity"), NATS: nc, JetStream: js,
		Vault: vi.Client, HandlerOptions: plain})
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := registerSystemKeys(ctx, idn, sysKeys); err != nil {
		return nil, fmt.Errorf("internal credentials: %w", err)
	}
	identityHandler = serviceHandler(idn.Services)

	var rc redaction.Config
	if err := platform.LoadConfig("BULWARK_REDACTION_", &rc); err != nil {
		return nil, err
	}
	if !rc.AuthDisabled {
		rc.IdentityURL, rc.ServiceCredential = inProcessIdentity, platform.Secret(sysKey)
	}
	red, err := redaction.New(redaction.Params{Config: rc, Logger: log.With("service", "redaction"), HandlerOptions: opts})
	if err != nil {
		return nil, fmt.Errorf("redaction: %w", err)
	}

	var lc ratelimit.Config
	if err := platform.LoadConfig("BULWARK_RATELIMIT_", &lc); err != nil {
		return nil, err
	}
	if !lc.AuthDisabled {
		lc.IdentityURL, lc.ServiceCredential = inProcessIdentity, platform.Secret(sysKey)
	}
	rl, err := ratelimit.New(ctx, ratelimit.Params{Config: lc, Logger: log.With("service", "ratelimit"), Redis: rdb, JS: js,
		Registerer: reg, HandlerOptions: opts, TracerProvider: tp})
	if err != nil {
		if _, embedded := isEmbedded(redisWhere); embedded {
			return nil, fmt.Errorf("%w: %w", ErrEmbeddedRedis, err)
		}
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if _, embedded := isEmbedded(redisWhere); embedded {
		if err := checkLimiter(ctx, rl.API); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrEmbeddedRedis, err)
		}
	}
	in.goBG("ratelimit", rl.Run)

	var rtc router.Config
	if err := platform.LoadConfig("BULWARK_ROUTER_", &rtc); err != nil {
		return nil, err
	}
	var providerClient *http.Client
	if rtc.CatalogFile == "" {
		// Every provider of the development catalog is the simulator, served in this process.
		in.Sim = sim.New(p.SimParams)
		rtc.SimulatorURL = "http://provsim.in-process"
		providerClient = gateway.InProcessClient(in.Sim)
		if err := seedProviderKeys(ctx, vi.Client, ic.Environments); err != nil {
			return nil, fmt.Errorf("seed simulator keys: %w", err)
		}
		in.goBG("provsim-trim", func(ctx context.Context) error { trimRecordings(ctx, in.Sim); return nil })
	}
	if !rtc.AuthDisabled {
		rtc.IdentityURL, rtc.ServiceCredential = inProcessIdentity, platform.Secret(sysKey)
	}
	rt, err := router.New(router.Params{Config: rtc, Logger: log.With("service", "router"), Vault: vi.Client, JetStream: js,
		HandlerOptions: opts, HTTPClient: providerClient, TracerProvider: tp, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}

	if _, set := os.LookupEnv("BULWARK_GATEWAY_SPOOL_DIR"); !set {
		gc.SpoolDir = filepath.Join(cfg.DataDir, "gateway")
	}
	gc.ShutdownTimeout = cfg.ShutdownTimeout
	hasher, err := payloadhash.LoadFromVault(ctx, payloadhash.VaultParams{Client: vi.Client, Mount: gc.HMACMount, Path: gc.HMACPath, Create: gc.HMACCreate})
	if err != nil {
		return nil, fmt.Errorf("gateway payload key: %w", err)
	}
	gw, err := gateway.New(gateway.Params{
		Config: gc, Logger: log.With("service", "gateway"),
		Authenticator:  idClient,
		Authorizer:     policyClient,
		Limiter:        rl.API,
		Redactor:       gateway.EngineRedactor(red.Engine),
		Router:         rt.API,
		Streamer:       gateway.StreamerFromFunc(rt.Stream),
		Hasher:         hasher,
		NATS:           nc,
		JS:             js,
		HandlerOptions: plain,
		TracerProvider: tp,
		Registerer:     reg,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	in.Gateway = gw
	in.goBG("gateway", func(ctx context.Context) error { gw.Run(ctx); return nil })

	boot, err := idn.Bootstrap(ctx, identity.BootstrapParams{Key: cfg.BootstrapAdminKey.Reveal()})
	if err != nil {
		return nil, fmt.Errorf("bootstrap admin: %w", err)
	}
	in.AdminCreated = boot.Created
	switch {
	case boot.Secret != "":
		in.AdminKey = boot.Secret
	case cfg.BootstrapAdminKey != "":
		in.AdminKey = cfg.BootstrapAdminKey.Reveal()
	}

	services := append([]platform.Service{}, idn.Services...)
	services = append(services,
		platform.Service{Name: red.Name, Path: red.Path, Handler: red.Handler},
		platform.Service{Name: rl.Name, Path: rl.Path, Handler: rl.Handler},
		platform.Service{Name: rt.Name, Path: rt.Path, Handler: rt.Handler},
		platform.Service{Name: aud.Name, Path: aud.Path, Handler: aud.Handler},
		platform.Service{Name: gw.Name, Path: gw.Path, Handler: gw.Handler},
	)
	routes := gw.Routes()
	if in.Sim != nil {
		routes[SimRequestsPath] = simRequests(in.Sim)
	}
	in.srv, err = platform.NewServer(platform.ServerParams{Name: "bulwark", Logger: log, Registry: reg, Services: services, Routes: routes,
		MaxRequestBytes: gc.MaxBodyBytes, ShutdownTimeout: cfg.ShutdownTimeout})
	if err != nil {
		return nil, err
	}
	in.ln = p.Listener
	if in.ln == nil {
		var lcfg net.ListenConfig
		if in.ln, err = lcfg.Listen(ctx, "tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	in.URL = "http://" + hostPort(in.ln.Addr())
	return in, nil
}

func isEmbedded(where string) (string, bool) {
	const prefix = "embedded:"
	if len(where) > len(prefix) && where[:len(prefix)] == prefix {
		return where[len(prefix):], true
	}
	return where, false
}

// checkLimiter makes one reservation of every limit kind and releases it, so
// a Redis-protocol server that cannot run the limiter's scripts fails at start.
func checkLimiter(ctx context.Context, api ratelimitv1connect.RateLimitServiceHandler) error {
	per := durationpb.New(time.Minute)
	dims := []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_PRINCIPAL}
	res, err := api.Reserve(ctx, connect.NewRequest(&ratelimitv1.ReserveRequest{
		RequestId: "startup-check-" + randomHex(8),
		Subject:   &ratelimitv1.Subject{PrincipalId: "startup-check", TeamId: "startup-check", ApiKeyId: "startup-check", Model: "gpt-4o", Environment: "dev"},
		Limits: []*ratelimitv1.LimitSpec{
			{Name: "requests", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Dimensions: dims, Limit: 1000, Period: per},
			{Name: "tokens", Kind: ratelimitv1.LimitKind_LIMIT_KIND_TOKENS, Dimensions: dims, Limit: 1000000, Period: per},
			{Name: "spend", Kind: ratelimitv1.LimitKind_LIMIT_KIND_SPEND, Dimensions: dims, Limit: 1000000000, CalendarPeriod: "day"},
			{Name: "concurrency", Kind: ratelimitv1.LimitKind_LIMIT_KIND_CONCURRENCY, Dimensions: dims, Limit: 10},
		},
		EstimatedInputTokens: 1, MaxOutputTokens: 1,
	}))
	if err != nil {
		return err
	}
	if !res.Msg.GetAllowed() || res.Msg.GetDegraded() {
		return fmt.Errorf("startup reservation allowed=%v degraded=%v", res.Msg.GetAllowed(), res.Msg.GetDegraded())
	}
	_, err = api.Release(ctx, connect.NewRequest(&ratelimitv1.ReleaseRequest{ReservationId: res.Msg.GetReservationId()}))
	return err
}

// inProcessIdentity stands for identity's URL: in this process the services
// reach identity through the in-process authorizer, not over the network.
const inProcessIdentity = "http://identity.in-process"

// hostPort turns a wildcard listen address into one a local client can dial.
func hostPort(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}

func (in *Instance) goBG(name string, f func(ctx context.Context) error) {
	in.bg.Go(func() {
		if err := f(in.bgCtx); err != nil && !errors.Is(err, context.Canceled) && in.bgCtx.Err() == nil {
			in.log.Error("background task stopped", "task", name, "err", err)
		}
	})
}

// Run serves until ctx is done, then stops taking requests, drains in-flight
// ones, drains the gateway's settlements and audit records and its spool,
// and stops every embedded dependency.
func (in *Instance) Run(ctx context.Context) error {
	serr := in.srv.Serve(ctx, in.ln)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ShutdownTimeout)
	defer cancel()
	derr := in.Gateway.Shutdown(dctx)
	if derr != nil {
		in.log.Error("audit drain incomplete", "err", derr, "spooled", in.Gateway.Spooled())
	}
	in.bgCancel()
	in.bg.Wait()
	in.closer.run()
	if serr != nil && !errors.Is(serr, context.Canceled) {
		return serr
	}
	return derr
}

// serviceHandler routes to whichever of the services owns the path.
func serviceHandler(svcs []platform.Service) http.Handler {
	mux := http.NewServeMux()
	for _, s := range svcs {
		mux.Handle(s.Path, s.Handler)
	}
	return mux
}

// keyedPolicy calls PolicyService.Authorize with the internal key of the
// request's environment (a key acts only in its own environment).
type keyedPolicy struct {
	identityv1connect.PolicyServiceClient
	keys map[string]string
	def  string
}

// Authorize sets the credential for the request's environment.
func (a keyedPolicy) Authorize(ctx context.Context, req *connect.Request[identityv1.AuthorizeRequest]) (*connect.Response[identityv1.AuthorizeResponse], error) {
	k, ok := a.keys[req.Msg.GetResource().GetEnvironment()]
	if !ok {
		k = a.keys[a.def]
	}
	req.Header().Set("Authorization", "Bearer "+k)
	return a.PolicyServiceClient.Authorize(ctx, req)
}

const (
	systemKeysPath = "bulwark/allinone/system-keys"
	// systemPrincipal is the all-in-one's internal service principal (role system).
	systemPrincipal = "svc_allinone_system"
)

// loadSystemKeys reads (or makes and stores, on first start) the internal key
// of each environment.
func loadSystemKeys(ctx context.Context, vc *vault.Client, envs []string) (map[string]string, error) {
	kv := vc.KVv2("secret")
	stored := map[string]string{}
	sec, err := kv.Get(ctx, systemKeysPath)
	switch {
	case err == nil:
		for k, v := range sec.Data {
			if s, ok := v.(string); ok {
				stored[k] = s
			}
		}
	case !errors.Is(err, vault.ErrSecretNotFound):
		return nil, err
	}
	changed := false
	for _, env := range envs {
		if stored[env] == "" {
			stored[env] = identity.GenerateKey(env)
			changed = true
		}
	}
	if changed {
		data := map[string]any{}
		for k, v := range stored {
			data[k] = v
		}
		if _, err := kv.Put(ctx, systemKeysPath, data); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

// registerSystemKeys makes sure identity knows the internal principal and its keys.
func registerSystemKeys(ctx context.Context, idn *identity.Service, keys map[string]string) error {
	for env, k := range keys {
		if _, err := idn.Bootstrap(ctx, identity.BootstrapParams{PrincipalID: systemPrincipal, Roles: []string{"system"}, Key: k}); err != nil {
			return fmt.Errorf("register the internal %s key: %w", env, err)
		}
	}
	return nil
}

// SimProviders are the providers of the development catalog; each gets a
// simulator key in every environment.
var SimProviders = []string{"openai", "anthropic", "azure"}

// seedProviderKeys stores a key for every simulated provider in every
// environment, unless one is there already.
func seedProviderKeys(ctx context.Context, vc *vault.Client, envs []string) error {
	kv := vc.KVv2("secret")
	for _, env := range envs {
		for _, prov := range SimProviders {
			path := "bulwark/" + env + "/providers/" + prov
			_, err := kv.Get(ctx, path)
			if err == nil {
				continue
			}
			if !errors.Is(err, vault.ErrSecretNotFound) {
				return err
			}
			if _, err := kv.Put(ctx, path, map[string]any{"api_key": "sim-" + env + "-" + prov + "-" + randomHex(8)}, vault.WithCheckAndSet(0)); err != nil {
				return err
			}
		}
	}
	return nil
}

// SimRequestsPath serves what the built-in simulator received (development only):
// GET lists the recorded requests (without credentials), DELETE forgets them.
const SimRequestsPath = "/_dev/provsim/requests"

// SimRequest is one recorded provider request as SimRequestsPath returns it.
type SimRequest struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Time   time.Time       `json:"time"`
	Body   json.RawMessage `json:"body"`
}

func simRequests(s *sim.Sim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			reqs := s.Requests()
			out := make([]SimRequest, 0, len(reqs))
			for _, q := range reqs {
				body := json.RawMessage(q.Body)
				if !json.Valid(body) {
					b, _ := json.Marshal(string(q.Body))
					body = b
				}
				out = append(out, SimRequest{Method: q.Method, Path: q.Path, Time: q.Time, Body: body})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
		case http.MethodDelete:
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}

// trimRecordings keeps the simulator's recording bounded in a long-running instance.
func trimRecordings(ctx context.Context, s *sim.Sim) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.RequestCount() > 1000 {
				s.Reset()
			}
		}
	}
}
