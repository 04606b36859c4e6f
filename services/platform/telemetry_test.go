package platform

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestNewTracerProvider_NoneIsNoopAndBadSettingsAreRefused(t *testing.T) {
	tp, stop, err := NewTracerProvider(context.Background(), "x", TracingConfig{Exporter: "none", SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	if span.SpanContext().IsValid() {
		t.Error("the none exporter records spans")
	}
	_ = stop(context.Background())
	if i, err := TracingInterceptor(tp); i != nil || err != nil {
		t.Errorf("tracing off still intercepts every RPC: %v, %v", i, err)
	}
	if opts, err := ClientOptions(tp); len(opts) != 0 || err != nil {
		t.Errorf("tracing off still adds client options: %v, %v", opts, err)
	}
	for _, c := range []TracingConfig{{Exporter: "zipkin", SampleRatio: 1}, {Exporter: "stdout", SampleRatio: 2}} {
		if _, _, err := NewTracerProvider(context.Background(), "x", c); !errors.Is(err, ErrTracingConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	tp, stop, err = NewTracerProvider(context.Background(), "x", TracingConfig{Exporter: "stdout", SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, span := tp.Tracer("t").Start(context.Background(), "s"); !span.SpanContext().IsValid() {
		t.Error("the stdout exporter's provider does not record")
	}
	if i, err := TracingInterceptor(tp); i == nil || err != nil {
		t.Errorf("tracing on: interceptor %v, %v", i, err)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTraceHTTP_ContinuesTheCallersTraceAndRecordsTheStatus(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	var inner string
	h := TraceHTTP(tp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = TraceID(r.Context())
		w.WriteHeader(http.StatusBadGateway)
	}))
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions?key=secret", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	got := spans.GetSpans()
	if len(got) != 1 || inner != "4bf92f3577b34da6a3ce929d0e0e4736" || got[0].SpanContext.TraceID().String() != inner {
		t.Fatalf("spans %d, handler trace %q", len(got), inner)
	}
	if got[0].Name != "POST /v1/chat/completions" || got[0].SpanKind != trace.SpanKindServer || got[0].Status.Code.String() != "Error" {
		t.Errorf("span %q kind %v status %v", got[0].Name, got[0].SpanKind, got[0].Status)
	}
	for _, a := range got[0].Attributes {
		if a.Value.Emit() == "secret" || a.Value.Emit() == "/v1/chat/completions?key=secret" {
			t.Errorf("attribute %s carries the query", a.Key)
		}
	}
	if TraceHTTP(nil, h) == nil {
		t.Error("nil provider")
	}
}

func TestConsumeSpan_JoinsThePublishersTraceFromNATSHeaders(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "publish")
	h := nats.Header{}
	InjectTrace(ctx, h)
	parent.End()
	ConsumeSpan(context.Background(), tp, "audit ingest x", h)
	ConsumeSpan(context.Background(), tp, "no context", nats.Header{}) // nothing to continue: no span
	got := spans.GetSpans()
	if len(got) != 2 || got[1].Name != "audit ingest x" || got[1].Parent.SpanID() != parent.SpanContext().SpanID() ||
		got[1].SpanKind != trace.SpanKindConsumer {
		t.Fatalf("spans: %+v", got)
	}
}
