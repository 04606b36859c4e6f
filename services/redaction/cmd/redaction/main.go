// Command redaction runs the redaction service on its own.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/redaction"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg redaction.Config
	if err := platform.LoadConfig("BULWARK_REDACTION_", &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := platform.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err := run(ctx, log, cfg); err != nil {
		log.Error("redaction stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg redaction.Config) error {
	log.InfoContext(ctx, "starting redaction", "config", platform.ConfigValue(cfg))
	tp, stopTracing, err := platform.StartTracing(ctx, "redaction", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := platform.NewRegistry()
	ip := platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg), TracerProvider: tp}
	if ip.Auth, err = authFunc(ctx, log, cfg); err != nil {
		return err
	}
	svc, err := redaction.New(redaction.Params{Config: cfg, Logger: log, HandlerOptions: platform.HandlerOptions(ip)})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "redaction", Logger: log, Registry: reg,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}

// authFunc authenticates every caller with identity and asks it for the procedure's
// permission from the shared table.
func authFunc(ctx context.Context, log *slog.Logger, cfg redaction.Config) (platform.AuthFunc, error) {
	if cfg.AuthDisabled {
		log.WarnContext(ctx, "authentication disabled: every redaction RPC is open")
		return nil, nil
	}
	hc := platform.HTTPClient()
	az, err := authz.NewInterceptor(authz.InterceptorParams{
		Identity:          identityv1connect.NewIdentityServiceClient(hc, cfg.IdentityURL),
		Policy:            identityv1connect.NewPolicyServiceClient(hc, cfg.IdentityURL),
		ServiceCredential: cfg.ServiceCredential.Reveal(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return az.AuthFunc(), nil
}
