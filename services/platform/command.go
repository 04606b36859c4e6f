package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Logging is the log settings every service's configuration embeds
// (BULWARK_<SERVICE>_LOG_FORMAT and _LOG_LEVEL).
type Logging struct {
	// LogFormat is "json" or "text".
	LogFormat string `env:"LOG_FORMAT" default:"json"`
	// LogLevel is "debug", "info", "warn" or "error".
	LogLevel string `env:"LOG_LEVEL" default:"info"`
}

// Logger is the logger these settings describe.
func (l Logging) Logger() *slog.Logger { return NewLogger(l.LogFormat, l.LogLevel) }

// Process is what a service's process has before its own parts: a logger,
// tracing, a metrics registry, and the parameters of its RPC handlers'
// interceptors (logger, metrics and tracer set; the service adds Auth).
type Process struct {
	Log          *slog.Logger
	Tracer       trace.TracerProvider
	Registry     *prometheus.Registry
	Interceptors InterceptorParams
}

// ConfigFrom loads a configuration from the environment variables that start
// with prefix and validates it when it has a Validate method.
func ConfigFrom[C any](prefix string) func() (C, error) {
	return func() (C, error) {
		var cfg C
		if err := LoadConfig(prefix, &cfg); err != nil {
			return cfg, err
		}
		if v, ok := any(cfg).(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return cfg, err
			}
		}
		return cfg, nil
	}
}

// Command is the main function of a service named name: it loads its
// configuration with load, exiting with status 2 when that fails (the
// configuration is wrong, and the message says how); then logs the
// configuration (secrets redacted), starts tracing and runs run until
// SIGINT or SIGTERM, exiting with status 1 when run fails. A run that ends
// because the process was told to stop is a clean exit.
func Command[C interface{ Logger() *slog.Logger }](name string, load func() (C, error), run func(ctx context.Context, p Process, cfg C) error) {
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	log := cfg.Logger()
	err = start(ctx, name, log, cfg, run)
	signalled := ctx.Err() != nil
	stop()
	if err != nil && !(signalled && errors.Is(err, context.Canceled)) {
		log.Error(name+" stopped", "err", err)
		os.Exit(1)
	}
}

func start[C any](ctx context.Context, name string, log *slog.Logger, cfg C, run func(context.Context, Process, C) error) error {
	log.InfoContext(ctx, "starting "+name, "config", ConfigValue(cfg))
	tp, stopTracing, err := StartTracing(ctx, name, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := NewRegistry()
	return run(ctx, Process{Log: log, Tracer: tp, Registry: reg,
		Interceptors: InterceptorParams{Logger: log, Metrics: NewRPCMetrics(reg), TracerProvider: tp}}, cfg)
}

// ServiceAuth is how a service other than identity authenticates its callers
// when it runs on its own (BULWARK_<SERVICE>_IDENTITY_URL, _SERVICE_CREDENTIAL
// and _AUTH_DISABLED); services embed it in their configuration.
type ServiceAuth struct {
	// IdentityURL is the identity service, which authenticates callers and
	// decides each procedure's permission from the shared table (see the
	// service's README); required unless AuthDisabled.
	IdentityURL string `env:"IDENTITY_URL"`
	// ServiceCredential is the service's own identity key, used to ask for decisions.
	ServiceCredential Secret `env:"SERVICE_CREDENTIAL"`
	// AuthDisabled serves every RPC without authentication (local development only).
	AuthDisabled bool `env:"AUTH_DISABLED" default:"false"`
}

// CheckAuth reports a ServiceAuth that could not authenticate anyone.
func (a ServiceAuth) CheckAuth() error {
	if !a.AuthDisabled && (a.IdentityURL == "" || a.ServiceCredential == "") {
		return errors.New("IDENTITY_URL and SERVICE_CREDENTIAL are required unless AUTH_DISABLED=true")
	}
	return nil
}
