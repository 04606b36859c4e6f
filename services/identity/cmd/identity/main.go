// Command identity runs the identity service on its own.
package main

import (
	"context"
	"fmt"

	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// config is the service's configuration (BULWARK_IDENTITY_*) and the
// bootstrap admin key, read from BULWARK_* as the all-in-one binary does.
type config struct {
	identity.Config
	AdminKey platform.Secret
}

func load() (config, error) {
	var boot struct {
		AdminKey platform.Secret `env:"BOOTSTRAP_ADMIN_KEY"`
	}
	cfg, err := platform.ConfigFrom[identity.Config]("BULWARK_IDENTITY_")()
	if err != nil {
		return config{}, err
	}
	if err := platform.LoadConfig("BULWARK_", &boot); err != nil {
		return config{}, err
	}
	return config{Config: cfg, AdminKey: boot.AdminKey}, nil
}

func main() {
	platform.Command("identity", load, run)
}

func run(ctx context.Context, p platform.Process, c config) error {
	cfg := c.Config
	nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, p.Log)
	if err != nil {
		return err
	}
	defer nc.Close()
	vc, err := platform.NewVault(ctx, cfg.Vault, p.Log)
	if err != nil {
		return err
	}
	svc, err := identity.New(ctx, identity.Params{Config: cfg, Logger: p.Log, NATS: nc, JetStream: js, Vault: vc,
		HandlerOptions: platform.HandlerOptions(p.Interceptors)})
	if err != nil {
		return err
	}
	if key := c.AdminKey.Reveal(); key != "" {
		res, err := svc.Bootstrap(ctx, identity.BootstrapParams{Key: key})
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		p.Log.InfoContext(ctx, "bootstrap admin ready", "principal_id", res.Principal.Id, "api_key_id", res.KeyID, "created", res.Created)
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "identity", Logger: p.Log, Registry: p.Registry, Services: svc.Services})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}
