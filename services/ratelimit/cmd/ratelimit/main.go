// Command ratelimit runs the rate limit service on its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/services/identity/authz"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg ratelimit.Config
	if err := platform.LoadConfig("BULWARK_RATELIMIT_", &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := platform.NewLogger(cfg.LogFormat, cfg.LogLevel)
	if err := run(ctx, log, cfg); err != nil {
		log.Error("ratelimit stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg ratelimit.Config) error {
	log.InfoContext(ctx, "starting ratelimit", "config", platform.ConfigValue(cfg))
	tp, stopTracing, err := platform.StartTracing(ctx, "ratelimit", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := platform.NewRegistry()
	rdb, err := platform.NewRedis(ctx, cfg.Redis)
	if errors.Is(err, platform.ErrRedisConfig) {
		return err
	}
	if err != nil {
		// Not fatal: until Redis answers, Reserve fails closed (or open, when a request asks).
		log.WarnContext(ctx, "redis is not reachable yet; serving in failure mode", "error", err)
		if rdb, err = platform.RedisClient(cfg.Redis); err != nil {
			return err
		}
	}
	defer func() { _ = rdb.Close() }()
	ip := platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg), TracerProvider: tp}
	if ip.Auth, err = authFunc(ctx, log, cfg); err != nil {
		return err
	}
	p := ratelimit.Params{Config: cfg, Logger: log, Redis: rdb, Registerer: reg, HandlerOptions: platform.HandlerOptions(ip)}
	if cfg.NATS.URL != "" {
		nc, js, err := platform.ConnectNATS(ctx, cfg.NATS, log)
		if err != nil {
			return err
		}
		defer nc.Close()
		p.JS = js
	}
	svc, err := ratelimit.New(ctx, p)
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "ratelimit", Logger: log, Registry: reg,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return srv.ListenAndServe(gctx, cfg.Addr) })
	return g.Wait()
}

// authFunc authenticates every caller with identity and asks it for the procedure's
// permission from the shared table.
func authFunc(ctx context.Context, log *slog.Logger, cfg ratelimit.Config) (platform.AuthFunc, error) {
	if cfg.AuthDisabled {
		log.WarnContext(ctx, "authentication disabled: every ratelimit RPC is open")
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
