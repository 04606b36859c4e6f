// Command redaction runs the redaction service on its own.
package main

import (
	"context"

	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/redaction"
)

func main() {
	platform.Command("redaction", platform.ConfigFrom[redaction.Config]("BULWARK_REDACTION_"), run)
}

func run(ctx context.Context, p platform.Process, cfg redaction.Config) error {
	var err error
	if p.Interceptors.Auth, err = authz.ForService(ctx, "redaction", cfg.ServiceAuth, p.Log); err != nil {
		return err
	}
	svc, err := redaction.New(redaction.Params{Config: cfg, Logger: p.Log, HandlerOptions: platform.HandlerOptions(p.Interceptors)})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "redaction", Logger: p.Log, Registry: p.Registry,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}
