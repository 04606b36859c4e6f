// Package router is the router service as a component: New builds the catalog,
// the Vault-backed key source, the routing engine and the Connect handler, so the
// standalone binary and the all-in-one binary mount the same thing.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"
	vault "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/router/internal/adminaudit"
	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/config"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/server"
	"github.com/bulwarkhq/bulwark/services/router/internal/upstream"
)

// Config is read from BULWARK_ROUTER_* environment variables.
type Config struct {
	Addr string `env:"ADDR" default:":8084"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	// CatalogFile is a YAML or JSON file of providers, routes and data-class
	// requirements. Empty uses the development catalog pointing at SimulatorURL.
	CatalogFile string `env:"CATALOG_FILE"`
	// PersistCatalog writes PutProvider/PutRoute/SetProviderEnabled changes back to CatalogFile.
	PersistCatalog bool `env:"PERSIST_CATALOG" default:"true"`
	// SimulatorURL is where the development catalog sends calls (tools/provsim).
	SimulatorURL string `env:"SIMULATOR_URL" default:"http://127.0.0.1:8090"`
	// Vault is the router's own Vault identity (BULWARK_ROUTER_VAULT_ADDR, _TOKEN, _ROLE_ID, _SECRET_ID).
	Vault platform.VaultConfig `env:"VAULT_"`
	// KeyMount is the KV v2 mount; keys live at <KeyPathPrefix><env>/providers/<provider>.
	KeyMount      string        `env:"KEY_MOUNT" default:"secret"`
	KeyPathPrefix string        `env:"KEY_PATH_PREFIX" default:"bulwark/"`
	KeyTTL        time.Duration `env:"KEY_TTL" default:"15s"`
	// BreakerFailures in a row open a deployment's circuit for BreakerOpenFor.
	BreakerFailures int           `env:"BREAKER_FAILURES" default:"5"`
	BreakerOpenFor  time.Duration `env:"BREAKER_OPEN_FOR" default:"30s"`
	// NATS carries admin_action audit events.
	NATS platform.NATSConfig `env:"NATS_"`
	// ServiceAuth is IDENTITY_URL, SERVICE_CREDENTIAL and AUTH_DISABLED: how callers are
	// authenticated (permissions router.complete, router.provider.write, ...). With
	// AuthDisabled, admin_action events name the actor "unknown".
	platform.ServiceAuth `env:""`
}

// Validate reports a configuration the standalone service cannot run with.
func (c Config) Validate() error {
	if err := c.CheckAuth(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.CatalogFile != "" {
		if _, err := os.Stat(c.CatalogFile); err != nil {
			return fmt.Errorf("%w: catalog file: %w", ErrConfig, err)
		}
	}
	return nil
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("invalid router config")

// JetStream is what the router needs to publish audit events (jetstream.JetStream satisfies it).
type JetStream = adminaudit.JetStream

// Params configure New.
type Params struct {
	Config Config
	Logger *slog.Logger
	// Vault is the router's logged-in Vault client (platform.NewVault). Required.
	Vault *vault.Client
	// JetStream publishes admin actions; nil logs them only (development).
	JetStream JetStream
	// HandlerOptions are the platform interceptors.
	HandlerOptions []connect.HandlerOption
	// HTTPClient overrides the client used to call providers (tests).
	HTTPClient *http.Client
	// TracerProvider, when set, records a client span for every provider call.
	TracerProvider trace.TracerProvider
	// Registerer, when set, receives the per-provider RED metrics and the breaker gauge.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the mounted component.
type Service struct {
	Name    string
	Path    string
	Handler http.Handler
	// API is the handler implementation itself, for unary calls from the same
	// process (the all-in-one gateway): no encoding, no interceptors. Its
	// callers are trusted as the process is; Handler is what others reach.
	API routerv1connect.RouterServiceHandler
	// Stream is StreamComplete for callers in the same process: send gets each
	// message, valid until send returns; the error is a Connect error.
	Stream func(ctx context.Context, req *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error
}

// New builds the router.
func New(p Params) (*Service, error) {
	if p.Logger == nil {
		return nil, fmt.Errorf("%w: Logger is required", ErrConfig)
	}
	if p.Vault == nil {
		return nil, fmt.Errorf("%w: Vault client is required", ErrConfig)
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	c := p.Config
	var snap catalog.Snapshot
	var persist catalog.Persister
	if c.CatalogFile != "" {
		var err error
		if snap, err = config.Load(c.CatalogFile); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if c.PersistCatalog {
			persist = config.FilePersister{Path: c.CatalogFile}
		}
	} else {
		snap = config.DevDefault(c.SimulatorURL, p.Now())
	}
	cat, err := catalog.New(catalog.Params{Snapshot: snap, Persister: persist, Now: p.Now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	pm, err := newProviderMetrics(p.Registerer)
	if err != nil {
		return nil, err
	}
	src := keys.New(keys.Params{Store: keys.NewVaultStore(p.Vault, c.KeyMount), Logger: p.Logger, TTL: c.KeyTTL, PathPrefix: c.KeyPathPrefix, Now: p.Now})
	rt, err := routing.New(routing.Params{
		Catalog: cat, Keys: src, Logger: p.Logger, Now: p.Now,
		Upstream: observeUpstream(upstream.New(upstream.Params{HTTPClient: p.HTTPClient}), p.TracerProvider, pm),
		Breaker:  routing.BreakerSettings{ConsecutiveFailures: uint32(max(c.BreakerFailures, 0)), OpenFor: c.BreakerOpenFor},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	impl, err := server.New(server.Params{Router: rt, Catalog: cat, Keys: src.Available, Logger: p.Logger,
		Audit: adminaudit.New(adminaudit.Params{JS: p.JetStream, Logger: p.Logger, Now: p.Now})})
	if err != nil {
		return nil, err
	}
	path, h := routerv1connect.NewRouterServiceHandler(impl, p.HandlerOptions...)
	return &Service{Name: routerv1connect.RouterServiceName, Path: path, Handler: h, API: impl, Stream: impl.Stream}, nil
}
