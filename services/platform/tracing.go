package platform

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator is the W3C trace-context propagator used on every hop: Connect
// and gRPC headers, and NATS message headers.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// TracingInterceptor returns a Connect interceptor that starts a span per RPC
// on tp and propagates W3C trace context. Bulwark's services trust each other's
// trace context, so a request keeps one trace across every hop. With the
// no-op provider (tracing off) it returns a nil interceptor.
func TracingInterceptor(tp trace.TracerProvider) (connect.Interceptor, error) {
	if _, off := tp.(noop.TracerProvider); off {
		// Tracing is off (BULWARK_TRACES_EXPORTER=none): no spans would be
		// recorded, so skip the per-RPC work of starting them.
		return nil, nil
	}
	return otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(Propagator),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	)
}

// ClientOptions returns the options every Bulwark Connect client uses: tracing
// when tp is not nil.
func ClientOptions(tp trace.TracerProvider) ([]connect.ClientOption, error) {
	if tp == nil {
		return nil, nil
	}
	i, err := TracingInterceptor(tp)
	if err != nil || i == nil {
		return nil, err
	}
	return []connect.ClientOption{connect.WithInterceptors(i)}, nil
}

// InjectTrace writes ctx's trace context into NATS message headers.
func InjectTrace(ctx context.Context, h nats.Header) {
	Propagator.Inject(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// ExtractTrace returns ctx carrying the trace context found in NATS message headers.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	return Propagator.Extract(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// TraceID returns the hex trace id of ctx's span, or "" when there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
