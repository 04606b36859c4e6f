// Command ratelimit runs the rate, budget and anomaly service on its own.
package main

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
)

func main() {
	platform.Command("ratelimit", platform.ConfigFrom[ratelimit.Config]("BULWARK_RATELIMIT_"), run)
}

func run(ctx context.Context, p platform.Process, cfg ratelimit.Config) error {
	rdb, err := platform.NewRedis(ctx, cfg.Redis)
	if errors.Is(err, platform.ErrRedisConfig) {
		return err
	}
	if err != nil {
		// Not fatal: until Redis answers, Reserve fails closed (or open, when a request asks).
		p.Log.WarnContext(ctx, "redis is not reachable yet; serving in failure mode", "error", err)
		if rdb, err = platform.RedisClient(cfg.Redis); err != nil {
			return err
		}
	}
	defer func() { _ = rdb.Close() }()
	if p.Interceptors.Auth, err = authz.ForService(ctx, "ratelimit", cfg.ServiceAuth, p.Log); err != nil {
		return err
	}
	params := ratelimit.Params{Config: cfg, Logger: p.Log, Redis: rdb, Registerer: p.Registry, HandlerOptions: platform.HandlerOptions(p.Interceptors),
		TracerProvider: p.Tracer}
	if cfg.NATS.URL != "" {
		nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, p.Log)
		if err != nil {
			return err
		}
		defer nc.Close()
		params.JS = js
	}
	svc, err := ratelimit.New(ctx, params)
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "ratelimit", Logger: p.Log, Registry: p.Registry,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return srv.ListenAndServe(gctx, cfg.Addr) })
	return g.Wait()
}
