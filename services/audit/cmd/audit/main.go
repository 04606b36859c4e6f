// Command audit runs the audit service on its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg audit.Config
	if err := platform.LoadConfig("BULWARK_AUDIT_", &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := platform.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err := run(ctx, log, cfg); err != nil {
		log.Error("audit stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg audit.Config) error {
	log.InfoContext(ctx, "starting audit", "config", platform.ConfigValue(cfg))
	tp, stopTracing, err := platform.StartTracing(ctx, "audit", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if cfg.NATS.Name == "" {
		cfg.NATS.Name = "bulwark-audit"
	}
	nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	vc, err := platform.NewVault(ctx, cfg.Vault, log)
	if err != nil {
		return err
	}
	reg := platform.NewRegistry()
	ip := platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg), TracerProvider: tp}
	if cfg.AuthDisabled {
		log.WarnContext(ctx, "authentication disabled: every audit RPC is open")
	} else {
		hc := platform.HTTPClient()
		az, err := authz.NewInterceptor(authz.InterceptorParams{
			Identity:          identityv1connect.NewIdentityServiceClient(hc, cfg.IdentityURL),
			Policy:            identityv1connect.NewPolicyServiceClient(hc, cfg.IdentityURL),
			ServiceCredential: cfg.ServiceCredential.Reveal(), Logger: log,
		})
		if err != nil {
			return err
		}
		ip.Auth = az.AuthFunc()
	}
	svc, err := audit.New(ctx, audit.Params{Config: cfg, Logger: log, JS: js, Vault: vc, HandlerOptions: platform.HandlerOptions(ip), Registry: reg, TracerProvider: tp})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "audit", Logger: log, Registry: reg,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error { return srv.ListenAndServe(ctx, cfg.Addr) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
