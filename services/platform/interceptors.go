package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// AuthFunc authenticates and authorizes one call from its procedure and headers.
// It returns the context to continue with (carrying the principal), or an error
// — normally a *connect.Error with CodeUnauthenticated or CodePermissionDenied.
type AuthFunc func(ctx context.Context, spec connect.Spec, header http.Header) (context.Context, error)

// RPCMetrics are the RED metrics of Connect handlers. Labels carry only the
// procedure name and the status code: never principals, keys or payload data.
type RPCMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

// NewRPCMetrics registers the RPC metrics on reg.
func NewRPCMetrics(reg prometheus.Registerer) *RPCMetrics {
	m := &RPCMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bulwark", Name: "rpc_requests_total",
			Help: "Connect/gRPC requests handled, by procedure and status code.",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "bulwark", Name: "rpc_duration_seconds",
			Help:    "Time to handle a Connect/gRPC request, by procedure and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"procedure", "code"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "bulwark", Name: "rpc_in_flight",
			Help: "Connect/gRPC requests being handled, by procedure.",
		}, []string{"procedure"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight)
	return m
}

// InterceptorParams configures the standard interceptor chain.
type InterceptorParams struct {
	// Logger logs one line per failed call and every recovered panic. Required.
	Logger *slog.Logger
	// Metrics records RED metrics; nil records none.
	Metrics *RPCMetrics
	// Auth, when set, runs before the handler on every call.
	Auth AuthFunc
	// TracerProvider, when set, traces every call and continues the caller's trace.
	TracerProvider trace.TracerProvider
}

// HandlerOptions returns the standard interceptor chain as handler options, in
// order: tracing (when configured), recover with metrics and logging, then auth.
func HandlerOptions(p InterceptorParams) []connect.HandlerOption {
	var chain []connect.Interceptor
	if p.TracerProvider != nil {
		if t, err := TracingInterceptor(p.TracerProvider); err == nil {
			if t != nil {
				chain = append(chain, t)
			}
		} else {
			p.Logger.Error("tracing disabled", "error", err.Error())
		}
	}
	chain = append(chain, &observeInterceptor{log: p.Logger, metrics: p.Metrics})
	if p.Auth != nil {
		chain = append(chain, &authInterceptor{auth: p.Auth})
	}
	// Compressing a small message costs more CPU (a gzip writer's reset
	// alone) than it saves on a service network; large ones (audit exports,
	// evidence) still travel compressed when the client accepts it.
	return []connect.HandlerOption{connect.WithInterceptors(chain...), connect.WithCompressMinBytes(CompressMinBytes)}
}

// CompressMinBytes is the smallest response a Bulwark service compresses.
const CompressMinBytes = 16 << 10

// recovered turns a handler panic into CodeInternal, logging the panic (but
// never sending it to the client), so that one bad request cannot kill the process.
func (o *observeInterceptor) recovered(ctx context.Context, procedure string, err *error) {
	if r := recover(); r != nil {
		if r == http.ErrAbortHandler {
			panic(r)
		}
		o.log.ErrorContext(ctx, "panic in handler", "procedure", procedure, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
}

type observeInterceptor struct {
	log     *slog.Logger
	metrics *RPCMetrics
}

func (o *observeInterceptor) observe(ctx context.Context, procedure string, start time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	if o.metrics != nil {
		o.metrics.requests.WithLabelValues(procedure, code).Inc()
		o.metrics.duration.WithLabelValues(procedure, code).Observe(time.Since(start).Seconds())
	}
	if err != nil {
		level := slog.LevelInfo
		if c := connect.CodeOf(err); c == connect.CodeInternal || c == connect.CodeUnknown || c == connect.CodeDataLoss {
			level = slog.LevelError
		}
		// Error text is what the client sees too, which handlers keep free of secrets and PII.
		o.log.Log(ctx, level, "rpc failed", "procedure", procedure, "code", code, "error", err.Error(), "duration", time.Since(start))
	}
}

func (o *observeInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (res connect.AnyResponse, err error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		start := time.Now()
		if o.metrics != nil {
			g := o.metrics.inflight.WithLabelValues(req.Spec().Procedure)
			g.Inc()
			defer g.Dec()
		}
		defer func() { o.observe(ctx, req.Spec().Procedure, start, err) }()
		defer o.recovered(ctx, req.Spec().Procedure, &err)
		return next(ctx, req)
	}
}

func (o *observeInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observeInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) (err error) {
		start := time.Now()
		if o.metrics != nil {
			g := o.metrics.inflight.WithLabelValues(conn.Spec().Procedure)
			g.Inc()
			defer g.Dec()
		}
		defer func() { o.observe(ctx, conn.Spec().Procedure, start, err) }()
		defer o.recovered(ctx, conn.Spec().Procedure, &err)
		return next(ctx, conn)
	}
}

type authInterceptor struct{ auth AuthFunc }

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.auth(ctx, req.Spec(), req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.auth(ctx, conn.Spec(), conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
