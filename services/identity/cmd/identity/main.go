// Command identity runs the identity service on its own.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// bootstrapConfig is read from BULWARK_* (shared with the all-in-one binary).
type bootstrapConfig struct {
	AdminKey platform.Secret `env:"BOOTSTRAP_ADMIN_KEY"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg identity.Config
	var boot bootstrapConfig
	if err := platform.LoadConfig("BULWARK_IDENTITY_", &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := platform.LoadConfig("BULWARK_", &boot); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := platform.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err := run(ctx, log, cfg, boot); err != nil {
		log.Error("identity stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg identity.Config, boot bootstrapConfig) error {
	log.InfoContext(ctx, "starting identity", "config", platform.ConfigValue(cfg))
	tp, stopTracing, err := platform.StartTracing(ctx, "identity", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	vc, err := platform.NewVault(ctx, cfg.Vault, log)
	if err != nil {
		return err
	}
	reg := platform.NewRegistry()
	svc, err := identity.New(ctx, identity.Params{Config: cfg, Logger: log, NATS: nc, JetStream: js, Vault: vc,
		HandlerOptions: platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg), TracerProvider: tp})})
	if err != nil {
		return err
	}
	if key := boot.AdminKey.Reveal(); key != "" {
		res, err := svc.Bootstrap(ctx, identity.BootstrapParams{Key: key})
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		log.InfoContext(ctx, "bootstrap admin ready", "principal_id", res.Principal.Id, "api_key_id", res.KeyID, "created", res.Created)
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "identity", Logger: log, Registry: reg, Services: svc.Services})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}
