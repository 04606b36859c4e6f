// Package identity is the identity service as a component: New opens the store,
// loads the API-key pepper from Vault, sets up OIDC and returns the Connect
// handlers of IdentityService, PolicyService, PromptService and ChangeService,
// so that the standalone binary and the all-in-one binary mount the same thing.
// Bootstrap creates the first admin and its key.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	vault "github.com/hashicorp/vault/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	domain "github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/identity/internal/natskv"
	"github.com/bulwarkhq/bulwark/services/identity/internal/oidc"
	"github.com/bulwarkhq/bulwark/services/identity/internal/server"
	"github.com/bulwarkhq/bulwark/services/identity/internal/vaultpepper"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// Config is read from BULWARK_IDENTITY_* environment variables.
type Config struct {
	Addr string `env:"ADDR" default:":8081"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	NATS             platform.NATSConfig  `env:"NATS_"`
	Vault            platform.VaultConfig `env:"VAULT_"`
	// Bucket is the JetStream KV bucket holding all identity state.
	Bucket         string `env:"BUCKET" default:"bulwark_identity"`
	BucketReplicas int    `env:"BUCKET_REPLICAS" default:"1"`
	// PepperMount and PepperPath locate the API-key pepper in Vault KV v2.
	PepperMount string `env:"PEPPER_MOUNT" default:"secret"`
	PepperPath  string `env:"PEPPER_PATH" default:"bulwark/identity/pepper"`
	// PepperCreate writes a random pepper when none exists (development installs).
	PepperCreate bool `env:"PEPPER_CREATE" default:"false"`
	// Environments that exist; the first is where a bootstrap key works by default.
	Environments []string `env:"ENVIRONMENTS" default:"dev,staging,prod"`
	// DevEnvironments use the built-in development policy until one is approved.
	DevEnvironments    []string `env:"DEV_ENVIRONMENTS" default:"dev"`
	StagingEnvironment string   `env:"STAGING_ENVIRONMENT" default:"staging"`
	ProdEnvironment    string   `env:"PROD_ENVIRONMENT" default:"prod"`
	// OIDCIssuers is a JSON array of issuer settings (see README); empty disables OIDC.
	OIDCIssuers   string        `env:"OIDC_ISSUERS"`
	OIDCClockSkew time.Duration `env:"OIDC_CLOCK_SKEW" default:"60s"`
	// RotationGrace is how long a rotated key keeps working unless the call says otherwise.
	RotationGrace time.Duration `env:"ROTATION_GRACE" default:"24h"`
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("invalid identity config")

// IssuerConfig describes one trusted OIDC issuer.
type IssuerConfig = oidc.IssuerConfig

// BootstrapParams describes the first admin; see Service.Bootstrap.
type BootstrapParams = domain.BootstrapParams

// BootstrapResult is what Bootstrap did.
type BootstrapResult = domain.BootstrapResult

// Params configures New.
type Params struct {
	Config Config
	Logger *slog.Logger
	// NATS and JetStream hold the state and carry the events. Required.
	NATS      *nats.Conn
	JetStream jetstream.JetStream
	// Vault supplies the pepper. Required unless Pepper is set.
	Vault *vault.Client
	// Pepper, when set, is used instead of reading Vault (at least 32 bytes).
	Pepper []byte
	// HandlerOptions are the platform interceptors; the authorizer runs after them.
	HandlerOptions []connect.HandlerOption
	// HTTPClient fetches OIDC discovery documents and keys; default http.DefaultClient.
	HTTPClient *http.Client
}

// Service is the mounted component.
type Service struct {
	// Services are the four Connect services, ready for platform.NewServer.
	Services []platform.Service
	domain   *domain.Service
}

// New builds the identity service and starts its cache-invalidation watch, which
// runs until ctx ends.
func New(ctx context.Context, p Params) (*Service, error) {
	if p.Logger == nil || p.JetStream == nil || p.NATS == nil {
		return nil, fmt.Errorf("%w: Logger, NATS and JetStream are required", ErrConfig)
	}
	c := p.Config
	pepper := p.Pepper
	if pepper == nil {
		if p.Vault == nil {
			return nil, fmt.Errorf("%w: Vault (or Pepper) is required", ErrConfig)
		}
		var err error
		pepper, err = vaultpepper.Load(ctx, vaultpepper.Params{Client: p.Vault, Mount: c.PepperMount, Path: c.PepperPath,
			CreateIfMissing: c.PepperCreate, Logger: p.Logger})
		if err != nil {
			return nil, err
		}
	}
	var verifier domain.TokenVerifier
	if c.OIDCIssuers != "" {
		var issuers []IssuerConfig
		if err := json.Unmarshal([]byte(c.OIDCIssuers), &issuers); err != nil {
			return nil, fmt.Errorf("%w: OIDC_ISSUERS is not a JSON array of issuers: %w", ErrConfig, err)
		}
		v, err := oidc.New(oidc.Params{Issuers: issuers, ClockSkew: c.OIDCClockSkew, HTTPClient: p.HTTPClient, Logger: p.Logger})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		verifier = v
	}
	store, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: p.JetStream, Bucket: c.Bucket, Replicas: c.BucketReplicas, Logger: p.Logger})
	if err != nil {
		return nil, err
	}
	svc, err := domain.New(domain.Params{
		Store: store, Publisher: natskv.NewPublisher(p.NATS, p.JetStream), Verifier: verifier, Pepper: pepper, Logger: p.Logger,
		Environments: c.Environments, DevEnvironments: c.DevEnvironments, StagingEnvironment: c.StagingEnvironment,
		ProdEnvironment: c.ProdEnvironment, RotationGrace: c.RotationGrace,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := svc.Start(ctx); err != nil {
		return nil, err
	}
	hs, err := server.Handlers(server.Params{Service: svc, Logger: p.Logger, Options: p.HandlerOptions})
	if err != nil {
		return nil, err
	}
	out := &Service{domain: svc}
	for _, h := range hs {
		out.Services = append(out.Services, platform.Service{Name: h.Name, Path: h.Path, Handler: h.Handler})
	}
	return out, nil
}

// Bootstrap creates the first admin and its key (from BULWARK_BOOTSTRAP_ADMIN_KEY
// when given as p.Key). It is idempotent.
func (s *Service) Bootstrap(ctx context.Context, p BootstrapParams) (BootstrapResult, error) {
	return s.domain.Bootstrap(ctx, p)
}

// Authenticate is the in-process form of IdentityService.Authenticate.
func (s *Service) Authenticate(ctx context.Context, credential, environment string) (*identityv1.AuthenticateResponse, error) {
	return s.domain.Authenticate(ctx, credential, environment)
}

// Authorize is the in-process form of PolicyService.Authorize. The response is
// shared with the decision cache: do not modify it.
func (s *Service) Authorize(ctx context.Context, req *identityv1.AuthorizeRequest) (*identityv1.AuthorizeResponse, error) {
	return s.domain.Authorize(ctx, req)
}

// GenerateKey returns a fresh, well-formed API key for env (for example to set
// BULWARK_BOOTSTRAP_ADMIN_KEY ahead of a first start).
func GenerateKey(env string) string { return domain.GenerateKey(env) }
