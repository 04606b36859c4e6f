// Package gateway mounts the Bulwark gateway: the OpenAI- and
// Anthropic-compatible front door and bulwark.gateway.v1.GatewayService, both
// running every call through the governed pipeline (authenticate, authorize,
// reserve, redact, route, restore, settle, audit).
//
// New takes its dependencies as the small interfaces in deps.go. In split mode
// pass the generated Connect clients; in the all-in-one binary pass the other
// services' handler implementations directly (unary RPCs have the same
// signatures) and, for streaming, a RouterStreamer (StreamerFromClient over
// InProcessClient, or the router's own in-process streamer).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1/gatewayv1connect"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/auditpub"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/httpapi"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/server"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// SubjectPolicyChanged is where identity announces policy, principal and key changes.
const SubjectPolicyChanged = "bulwark.identity.v1.policy_changed"

// Config is the gateway's configuration, read from BULWARK_GATEWAY_* variables.
type Config struct {
	Addr string `env:"ADDR" default:":8080"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	// Service URLs (split mode).
	IdentityURL  string `env:"IDENTITY_URL" default:"http://127.0.0.1:8081"`
	RedactionURL string `env:"REDACTION_URL" default:"http://127.0.0.1:8082"`
	RatelimitURL string `env:"RATELIMIT_URL" default:"http://127.0.0.1:8083"`
	RouterURL    string `env:"ROUTER_URL" default:"http://127.0.0.1:8084"`
	// RatelimitLanes is how many calls to the rate limit service may be in
	// flight at once in split mode; reservations made meanwhile go together
	// in one ReserveBatch call. 0 sends every reservation on its own.
	RatelimitLanes int `env:"RATELIMIT_LANES" default:"2"`
	// ServiceToken authenticates the gateway to the other services, if they require it.
	ServiceToken platform.Secret `env:"SERVICE_TOKEN"`
	// DefaultEnvironment applies when neither the key nor x-bulwark-environment names one.
	DefaultEnvironment string `env:"DEFAULT_ENVIRONMENT" default:"dev"`
	// MaxBodyBytes caps request bodies (413 above).
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" default:"8388608"`
	// CacheTTL bounds cached principals and decisions; policy_changed drops them at once.
	CacheTTL  time.Duration `env:"CACHE_TTL" default:"30s"`
	CacheSize int           `env:"CACHE_SIZE" default:"100000"`
	// DefaultMaxTokens is reserved when a request sets no max_tokens.
	DefaultMaxTokens int64 `env:"DEFAULT_MAX_TOKENS" default:"1024"`
	// ReservationTTL is how long an unsettled reservation holds.
	ReservationTTL time.Duration `env:"RESERVATION_TTL" default:"10m"`
	// AuditSync records every call before its answer completes (policy strict_audit does so per request).
	AuditSync bool `env:"AUDIT_SYNC" default:"false"`
	// AuditAckTimeout is the wait for JetStream's ack before an event is spooled.
	AuditAckTimeout time.Duration `env:"AUDIT_ACK_TIMEOUT" default:"2s"`
	// SpoolDir holds the audit spool file.
	SpoolDir string `env:"SPOOL_DIR" default:"./data/gateway"`
	// MaxSpoolBytes caps the spool; strict requests are refused when it is full.
	MaxSpoolBytes int64 `env:"MAX_SPOOL_BYTES" default:"1073741824"`
	// HMACMount, HMACPath and HMACCreate locate the audit payload HMAC key in Vault KV v2.
	HMACMount  string `env:"HMAC_MOUNT" default:"secret"`
	HMACPath   string `env:"HMAC_PATH" default:"bulwark/audit/payload-hmac"`
	HMACCreate bool   `env:"HMAC_CREATE" default:"true"`
	// ShutdownTimeout bounds draining in-flight requests and the spool.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"30s"`

	NATS  platform.NATSConfig  `env:"NATS_"`
	Vault platform.VaultConfig `env:"VAULT_"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("MAX_BODY_BYTES must be positive"))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("SPOOL_DIR is empty"))
	}
	if c.AuditAckTimeout <= 0 {
		errs = append(errs, errors.New("AUDIT_ACK_TIMEOUT must be positive"))
	}
	return errors.Join(errs...)
}

// Hasher computes the keyed payload hashes of audit records
// (*payloadhash.Hasher from the audit module).
type Hasher interface {
	Sum(payload []byte) string
}

// Params are the dependencies of New.
type Params struct {
	Config Config
	Logger *slog.Logger

	Authenticator Authenticator
	Authorizer    Authorizer
	Limiter       Limiter
	Redactor      Redactor
	Router        Router
	Streamer      RouterStreamer
	Hasher        Hasher

	// NATS carries policy_changed (cache invalidation) and, with JS, the audit events.
	NATS *nats.Conn
	JS   jetstream.JetStream
	// Audit, when set, replaces the JetStream publisher with spool built from NATS and JS.
	Audit AuditPublisher

	// HandlerOptions are passed to the GatewayService handler, e.g. platform.HandlerOptions.
	HandlerOptions []connect.HandlerOption
	// TracerProvider, when set, starts a server span per OpenAI/Anthropic HTTP
	// request (the Connect handler is traced through HandlerOptions); the audit
	// event carries that trace in its NATS headers and trace_id.
	TracerProvider trace.TracerProvider
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer takes the gateway's metrics (bulwark_gateway_*); nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Gateway is a ready gateway: mount Routes (HTTP) and Path/Handler (Connect),
// call Run in a goroutine, and Shutdown after the HTTP server stopped.
type Gateway struct {
	// Name is the Connect service name for health and reflection.
	Name string
	// Path and Handler serve bulwark.gateway.v1.GatewayService.
	Path    string
	Handler http.Handler
	// HTTP serves the OpenAI- and Anthropic-compatible APIs.
	HTTP http.Handler

	cfg Config
	log *slog.Logger
	pl  *pipeline.Pipeline
	pub *auditpub.Publisher
	sub *nats.Subscription
}

// New builds the gateway.
func New(p Params) (*Gateway, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if p.Logger == nil || p.Authenticator == nil || p.Authorizer == nil || p.Limiter == nil || p.Redactor == nil ||
		p.Router == nil || p.Streamer == nil || p.Hasher == nil {
		return nil, errors.New("gateway: Logger, Authenticator, Authorizer, Limiter, Redactor, Router, Streamer and Hasher are required")
	}
	g := &Gateway{cfg: p.Config, log: p.Logger}
	rec := p.Audit
	if rec == nil {
		if p.NATS == nil || p.JS == nil {
			return nil, errors.New("gateway: NATS and JS are required unless Audit is given")
		}
		pub, err := auditpub.New(auditpub.Params{Conn: p.NATS, JS: p.JS, SpoolDir: p.Config.SpoolDir, Logger: p.Logger,
			AckTimeout: p.Config.AuditAckTimeout, MaxSpoolBytes: p.Config.MaxSpoolBytes})
		if err != nil {
			return nil, err
		}
		g.pub, rec = pub, pub
	}
	pl, err := pipeline.New(pipeline.Params{
		Authenticator: identityAdapter{authn: p.Authenticator, authz: p.Authorizer},
		Authorizer:    identityAdapter{authn: p.Authenticator, authz: p.Authorizer},
		Limiter:       limiterAdapter{p.Limiter},
		Redactor:      redactorAdapter{p.Redactor},
		Router:        routerAdapter{r: p.Router, s: p.Streamer},
		Recorder:      rec, Hasher: p.Hasher, Logger: p.Logger, Now: p.Now,
		CacheTTL: p.Config.CacheTTL, CacheSize: p.Config.CacheSize, DefaultMaxTokens: p.Config.DefaultMaxTokens,
		ReservationTTL: p.Config.ReservationTTL, AuditSync: p.Config.AuditSync, DefaultEnvironment: p.Config.DefaultEnvironment,
		Metrics: pipeline.NewMetrics(p.Registerer),
	})
	if err != nil {
		return nil, err
	}
	g.pl = pl
	api, err := httpapi.New(httpapi.Params{Pipeline: pl, Logger: p.Logger, MaxBodyBytes: p.Config.MaxBodyBytes, Now: p.Now})
	if err != nil {
		return nil, err
	}
	g.HTTP = platform.TraceHTTP(p.TracerProvider, api)
	impl, err := server.New(pl, p.Logger)
	if err != nil {
		return nil, err
	}
	g.Path, g.Handler = gatewayv1connect.NewGatewayServiceHandler(impl, p.HandlerOptions...)
	g.Name = gatewayv1connect.GatewayServiceName
	if p.NATS != nil {
		sub, err := p.NATS.Subscribe(SubjectPolicyChanged, func(*nats.Msg) { pl.Invalidate() })
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", SubjectPolicyChanged, err)
		}
		g.sub = sub
	}
	return g, nil
}

// Routes are the HTTP routes to mount beside the Connect handler (platform.ServerParams.Routes).
func (g *Gateway) Routes() map[string]http.Handler {
	return map[string]http.Handler{"/v1/": g.HTTP, "/chat/completions": g.HTTP}
}

// Invalidate drops cached principals and decisions (policy_changed does this).
func (g *Gateway) Invalidate() { g.pl.Invalidate() }

// Run replays the audit spool whenever NATS is reachable, until ctx is done.
func (g *Gateway) Run(ctx context.Context) {
	if g.pub != nil {
		g.pub.Run(ctx)
		return
	}
	<-ctx.Done()
}

// Shutdown drains settlements and audit records of answered calls, then the
// spool, for at most ctx. Call it after the HTTP server stopped taking requests.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var errs []error
	if g.sub != nil {
		errs = append(errs, g.sub.Unsubscribe())
	}
	errs = append(errs, g.pl.Shutdown(ctx))
	if g.pub != nil {
		errs = append(errs, g.pub.Close(ctx))
	}
	return errors.Join(errs...)
}

// Spooled is the number of audit events waiting in the local spool.
func (g *Gateway) Spooled() int64 {
	if g.pub == nil {
		return 0
	}
	return g.pub.Spooled()
}
