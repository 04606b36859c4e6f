// Package audit mounts the audit service: the verifiable, append-only log of every LLM call
// and admin action. The all-in-one binary calls New with its NATS and Vault clients and
// mounts the returned handler; cmd/audit does the same as its own process.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
	"github.com/bulwarkhq/bulwark/services/audit/internal/server"
	"github.com/bulwarkhq/bulwark/services/audit/internal/vaultsign"
	"github.com/bulwarkhq/bulwark/services/platform"
	vault "github.com/hashicorp/vault/api"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Config is the audit service's configuration, read from BULWARK_AUDIT_* variables.
type Config struct {
	Addr string `env:"ADDR" default:":8085"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	// Origin names the log in checkpoints; use one per environment.
	Origin string `env:"ORIGIN" default:"bulwark.audit/dev"`
	// Retention is the audit stream's max age: 400 days covers a 12-month SOC 2 window.
	Retention time.Duration `env:"RETENTION" default:"9600h"`
	// DuplicateWindow drops a republished event id within this window.
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" default:"10m"`
	// CheckpointEvery and CheckpointInterval: sign when either is reached.
	CheckpointEvery    int           `env:"CHECKPOINT_EVERY" default:"10000"`
	CheckpointInterval time.Duration `env:"CHECKPOINT_INTERVAL" default:"1s"`
	BatchSize          int           `env:"BATCH_SIZE" default:"2000"`
	Replicas           int           `env:"REPLICAS" default:"1"`
	// TransitMount and TransitKey locate the Ed25519 signing key; CreateKey makes it if absent.
	TransitMount string `env:"TRANSIT_MOUNT" default:"transit"`
	TransitKey   string `env:"TRANSIT_KEY" default:"bulwark-audit-checkpoints"`
	CreateKey    bool   `env:"CREATE_KEY" default:"true"`
	// ServiceAuth is IDENTITY_URL, SERVICE_CREDENTIAL and AUTH_DISABLED: how callers are
	// authenticated (permissions audit.read, audit.verify, audit.export).
	platform.ServiceAuth `env:""`
	NATS                 platform.NATSConfig  `env:"NATS_"`
	Vault                platform.VaultConfig `env:"VAULT_"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Origin == "" {
		errs = append(errs, errors.New("ORIGIN is empty"))
	}
	if c.Retention < 24*time.Hour {
		errs = append(errs, errors.New("RETENTION below one day"))
	}
	if err := c.CheckAuth(); err != nil {
		errs = append(errs, err)
	}
	if c.CheckpointEvery <= 0 || c.CheckpointInterval <= 0 || c.BatchSize <= 0 {
		errs = append(errs, errors.New("CHECKPOINT_EVERY, CHECKPOINT_INTERVAL and BATCH_SIZE must be positive"))
	}
	return errors.Join(errs...)
}

// Params are the dependencies of New.
type Params struct {
	Config Config
	Logger *slog.Logger
	JS     jetstream.JetStream
	Vault  *vault.Client
	// HandlerOptions are passed to the generated handler, e.g. platform.HandlerOptions.
	HandlerOptions []connect.HandlerOption
	// Registry, when set, receives the log's gauges (tree size, checkpoint size and age,
	// dead letters).
	Registry prometheus.Registerer
	// TracerProvider, when set, continues each event's trace (W3C context in
	// its NATS headers) with a consumer span as the event is ingested.
	TracerProvider trace.TracerProvider
}

// Service is a ready audit service: mount Path/Handler, and call Run to ingest.
type Service struct {
	// Name is the fully qualified service name for health and reflection.
	Name    string
	Path    string
	Handler http.Handler
	log     *auditlog.Log
}

// New sets up the streams, the signer and the log, and builds the handler.
func New(ctx context.Context, p Params) (*Service, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("audit config: %w", err)
	}
	if p.JS == nil || p.Vault == nil || p.Logger == nil {
		return nil, errors.New("audit: JetStream, Vault and Logger are required")
	}
	c := p.Config
	store, err := jsstore.New(ctx, jsstore.Params{JS: p.JS, Retention: c.Retention, Duplicates: c.DuplicateWindow, Replicas: c.Replicas, TracerProvider: p.TracerProvider})
	if err != nil {
		return nil, err
	}
	signer, err := vaultsign.New(ctx, vaultsign.Params{Client: p.Vault, Mount: c.TransitMount, Key: c.TransitKey, Name: c.Origin, Create: c.CreateKey, Logger: p.Logger})
	if err != nil {
		return nil, err
	}
	vkey, err := signer.VerifierKey()
	if err != nil {
		return nil, err
	}
	pem, err := signer.PublicKeyPEM()
	if err != nil {
		return nil, err
	}
	lg, err := auditlog.New(ctx, auditlog.Params{Store: store, Signer: signer, VerifierKey: vkey, PublicKeyPEM: pem, Origin: c.Origin,
		CheckpointEvery: uint64(c.CheckpointEvery), CheckpointInterval: c.CheckpointInterval, BatchSize: c.BatchSize, Logger: p.Logger})
	if err != nil {
		return nil, err
	}
	impl, err := server.New(server.Params{Log: lg, Logger: p.Logger})
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := registerMetrics(p.Registry, lg); err != nil {
			return nil, err
		}
		if err := registerLag(p.Registry, p.JS); err != nil {
			return nil, err
		}
	}
	path, h := auditv1connect.NewAuditServiceHandler(impl, p.HandlerOptions...)
	p.Logger.InfoContext(ctx, "audit service ready", "signer", signer, "verifier_key", vkey)
	return &Service{Name: auditv1connect.AuditServiceName, Path: path, Handler: h, log: lg}, nil
}

// Run ingests the audit stream until ctx is done.
func (s *Service) Run(ctx context.Context) error { return s.log.Run(ctx) }

func registerMetrics(reg prometheus.Registerer, lg *auditlog.Log) error {
	cp := func(f func(auditlog.SignedCheckpoint) float64) func() float64 {
		return func() float64 {
			c, err := lg.LatestCheckpoint(context.Background())
			if err != nil {
				return 0
			}
			return f(c)
		}
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulwark_audit_tree_size", Help: "Leaves committed to the audit Merkle tree."},
			func() float64 { return float64(lg.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulwark_audit_checkpoint_tree_size", Help: "Tree size of the latest signed checkpoint."},
			cp(func(c auditlog.SignedCheckpoint) float64 { return float64(c.Size) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulwark_audit_checkpoint_age_seconds", Help: "Age of the latest signed checkpoint."},
			cp(func(c auditlog.SignedCheckpoint) float64 { return time.Since(c.Time).Seconds() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulwark_audit_dead_letters_total", Help: "Malformed messages dead-lettered by this process."},
			func() float64 { return float64(lg.DeadLetters()) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return nil
}
