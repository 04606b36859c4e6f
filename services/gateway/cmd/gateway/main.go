// Command gateway runs the gateway on its own (split mode): it calls identity,
// redaction, ratelimit and router over Connect and publishes audit events to
// JetStream.
package main

import (
	"context"

	"connectrpc.com/connect"
	"golang.org/x/sync/errgroup"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/payloadhash"
	"github.com/bulwarkhq/bulwark/services/gateway"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/ratelimit/ratelimitclient"
)

func main() {
	platform.Command("gateway", platform.ConfigFrom[gateway.Config]("BULWARK_GATEWAY_"), run)
}

// bearer adds the gateway's service credential to every outgoing call.
func bearer(token platform.Secret) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token.Reveal())
			}
			return next(ctx, req)
		}
	})
}

type streamBearer struct{ token platform.Secret }

func (b streamBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return bearer(b.token).WrapUnary(next)
}

func (b streamBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b.token != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+b.token.Reveal())
		}
		return conn
	}
}

func (b streamBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func run(ctx context.Context, p platform.Process, cfg gateway.Config) error {
	log, tp := p.Log, p.Tracer
	if cfg.NATS.Name == "" {
		cfg.NATS.Name = "bulwark-gateway"
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
	hasher, err := payloadhash.LoadFromVault(ctx, payloadhash.VaultParams{Client: vc, Mount: cfg.HMACMount, Path: cfg.HMACPath, Create: cfg.HMACCreate})
	if err != nil {
		return err
	}
	hc := platform.HTTPClient()
	traceOpts, err := platform.ClientOptions(tp)
	if err != nil {
		return err
	}
	// Tracing first, so each outgoing call carries the request's trace context.
	opts := connect.WithClientOptions(append(traceOpts, connect.WithInterceptors(streamBearer{cfg.ServiceToken}))...)
	router := routerv1connect.NewRouterServiceClient(hc, cfg.RouterURL, opts)
	rl := ratelimitv1connect.NewRateLimitServiceClient(hc, cfg.RatelimitURL, opts)
	var limiter gateway.Limiter = rl
	if cfg.RatelimitLanes > 0 {
		limiter = ratelimitclient.NewBatching(rl, cfg.RatelimitLanes)
	}
	reg := p.Registry
	gw, err := gateway.New(gateway.Params{
		Config: cfg, Logger: log,
		Authenticator: identityv1connect.NewIdentityServiceClient(hc, cfg.IdentityURL, opts),
		Authorizer:    identityv1connect.NewPolicyServiceClient(hc, cfg.IdentityURL, opts),
		Limiter:       limiter,
		Redactor:      redactionv1connect.NewRedactionServiceClient(hc, cfg.RedactionURL, opts),
		Router:        router,
		Streamer:      gateway.StreamerFromClient(router),
		Hasher:        hasher,
		NATS:          nc, JS: js,
		HandlerOptions: platform.HandlerOptions(p.Interceptors), TracerProvider: tp,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	srv, err := platform.NewServer(platform.ServerParams{Name: "gateway", Logger: log, Registry: reg,
		Services: []platform.Service{{Name: gw.Name, Path: gw.Path, Handler: gw.Handler}}, Routes: gw.Routes(),
		MaxRequestBytes: cfg.MaxBodyBytes, ShutdownTimeout: cfg.ShutdownTimeout})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { gw.Run(gctx); return nil })
	g.Go(func() error { return srv.ListenAndServe(gctx, cfg.Addr) })
	err = g.Wait()
	// The server has drained in-flight requests; now drain their audit records and the spool.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if serr := gw.Shutdown(sctx); serr != nil {
		log.Error("gateway drain incomplete", "err", serr, "spooled", gw.Spooled())
	}
	return err
}
