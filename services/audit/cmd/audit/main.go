// Command audit runs the audit service on its own.
package main

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
)

func main() {
	platform.Command("audit", platform.ConfigFrom[audit.Config]("BULWARK_AUDIT_"), run)
}

func run(ctx context.Context, p platform.Process, cfg audit.Config) error {
	if cfg.NATS.Name == "" {
		cfg.NATS.Name = "bulwark-audit"
	}
	nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, p.Log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	vc, err := platform.NewVault(ctx, cfg.Vault, p.Log)
	if err != nil {
		return err
	}
	if p.Interceptors.Auth, err = authz.ForService(ctx, "audit", cfg.ServiceAuth, p.Log); err != nil {
		return err
	}
	svc, err := audit.New(ctx, audit.Params{Config: cfg, Logger: p.Log, JS: js, Vault: vc, HandlerOptions: platform.HandlerOptions(p.Interceptors),
		Registry: p.Registry, TracerProvider: p.Tracer})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "audit", Logger: p.Log, Registry: p.Registry,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return srv.ListenAndServe(gctx, cfg.Addr) })
	return g.Wait()
}
