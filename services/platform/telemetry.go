package platform

// Trace export and the HTTP spans that otelconnect does not cover: the
// gateway's OpenAI/Anthropic routes (server side) and the router's calls to
// the providers (client side).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracingConfig selects the trace exporter. Every service reads it with the
// prefix "BULWARK_" (BULWARK_TRACES_EXPORTER, ...), so one setting covers a
// whole deployment.
type TracingConfig struct {
	// Exporter is none, stdout (JSON spans on stderr) or otlp (OTLP/HTTP).
	Exporter string `env:"TRACES_EXPORTER" default:"none"`
	// Endpoint is the OTLP/HTTP collector host:port; empty uses the standard
	// OTEL_EXPORTER_OTLP_ENDPOINT variables and their default.
	Endpoint string `env:"TRACES_ENDPOINT" default:""`
	// Insecure sends OTLP without TLS (a collector sidecar on localhost).
	Insecure bool `env:"TRACES_INSECURE" default:"false"`
	// SampleRatio is the fraction of new traces kept; a caller's sampling decision is always followed.
	SampleRatio float64 `env:"TRACES_SAMPLE_RATIO" default:"1"`
}

// ErrTracingConfig reports an unknown exporter or a ratio outside [0,1].
var ErrTracingConfig = errors.New("tracing config")

// NewTracerProvider builds the tracer provider of service name from cfg. With
// the exporter "none" it returns a no-op provider, so callers wire tracing
// unconditionally. The returned function flushes and stops the exporter.
func NewTracerProvider(ctx context.Context, name string, cfg TracingConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, nil, fmt.Errorf("%w: TRACES_SAMPLE_RATIO must be within [0,1]", ErrTracingConfig)
	}
	var exp sdktrace.SpanExporter
	var err error
	switch strings.ToLower(cfg.Exporter) {
	case "", "none":
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
	case "otlp":
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, nil, fmt.Errorf("%w: TRACES_EXPORTER must be none, stdout or otlp", ErrTracingConfig)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("bulwark-"+name))),
	)
	return tp, tp.Shutdown, nil
}

const instrumentation = "github.com/bulwarkhq/bulwark/services/platform"

// TraceHTTP starts a server span for each request to h, continuing the
// caller's W3C trace context. The span name is the method and the route
// pattern or path; no header, query or body is recorded (they may carry keys
// or PII). A nil tp returns h unchanged.
func TraceHTTP(tp trace.TracerProvider, h http.Handler) http.Handler {
	if tp == nil {
		return h
	}
	tr := tp.Tracer(instrumentation)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tr.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(semconv.HTTPResponseStatusCode(sw.code))
		if sw.code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.code))
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush keeps server-sent events streaming through the wrapper.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ConsumeSpan records the receipt of a NATS message: a consumer span in the
// publisher's trace (from h), ended at once. name says what consumed it.
func ConsumeSpan(ctx context.Context, tp trace.TracerProvider, name string, h map[string][]string) {
	if tp == nil {
		return
	}
	ctx = Propagator.Extract(ctx, propagation.HeaderCarrier(h))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	_, span := tp.Tracer(instrumentation).Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer))
	span.End()
}

// StartTracing reads TracingConfig from the BULWARK_TRACES_* variables and
// builds service name's tracer provider; stop flushes the spans still queued
// (bounded to five seconds) and logs a failure. Each service's main calls it.
func StartTracing(ctx context.Context, name string, log *slog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	var cfg TracingConfig
	if err := LoadConfig("BULWARK_", &cfg); err != nil {
		return nil, nil, err
	}
	tp, shutdown, err := NewTracerProvider(ctx, name, cfg)
	if err != nil {
		return nil, nil, err
	}
	log.InfoContext(ctx, "tracing", "exporter", cfg.Exporter, "sample_ratio", cfg.SampleRatio)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Error("trace exporter shutdown", "err", err.Error())
		}
	}, nil
}
