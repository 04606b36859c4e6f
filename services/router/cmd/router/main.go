// Command router runs the router service on its own.
package main

import (
	"context"

	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/router"
)

func main() {
	platform.Command("router", platform.ConfigFrom[router.Config]("BULWARK_ROUTER_"), run)
}

// run serves the router; the admin RPCs' actor is the principal identity
// authenticated.
func run(ctx context.Context, p platform.Process, cfg router.Config) error {
	vc, err := platform.NewVault(ctx, cfg.Vault, p.Log)
	if err != nil {
		return err
	}
	nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, p.Log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	if p.Interceptors.Auth, err = authz.ForService(ctx, "router", cfg.ServiceAuth, p.Log); err != nil {
		return err
	}
	svc, err := router.New(router.Params{Config: cfg, Logger: p.Log, Vault: vc, JetStream: js,
		HandlerOptions: platform.HandlerOptions(p.Interceptors), TracerProvider: p.Tracer, Registerer: p.Registry})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "router", Logger: p.Log, Registry: p.Registry,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}
