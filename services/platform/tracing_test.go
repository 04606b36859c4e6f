package platform_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

type traceEcho struct {
	redactionv1connect.UnimplementedRedactionServiceHandler
	seen chan string
}

func (e traceEcho) Inspect(ctx context.Context, _ *connect.Request[redactionv1.InspectRequest]) (*connect.Response[redactionv1.InspectResponse], error) {
	e.seen <- platform.TraceID(ctx)
	return connect.NewResponse(&redactionv1.InspectResponse{}), nil
}

func TestTracing_OneTraceAcrossClientServerAndNATS(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	log := platform.NewLogger("json", "error")
	h := traceEcho{seen: make(chan string, 1)}
	path, handler := redactionv1connect.NewRedactionServiceHandler(h, platform.HandlerOptions(platform.InterceptorParams{Logger: log, TracerProvider: tp})...)
	srv, err := platform.NewServer(platform.ServerParams{Name: "t", Logger: log, Services: []platform.Service{{Name: redactionv1connect.RedactionServiceName, Path: path, Handler: handler}}})
	if err != nil {
		t.Fatal(err)
	}
	url := platformtest.Serve(t, srv.Handler())
	opts, err := platform.ClientOptions(tp)
	if err != nil {
		t.Fatal(err)
	}
	client := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, append(opts, connect.WithGRPC())...)

	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := client.Inspect(ctx, connect.NewRequest(&redactionv1.InspectRequest{})); err != nil {
		t.Fatal(err)
	}
	want := root.SpanContext().TraceID().String()
	if got := <-h.seen; got != want {
		t.Fatalf("server saw trace %q, want %q", got, want)
	}
	msg := nats.NewMsg("bulwark.audit.v1.llm_call")
	platform.InjectTrace(ctx, msg.Header)
	if got := platform.TraceID(platform.ExtractTrace(context.Background(), msg.Header)); got != want {
		t.Fatalf("trace through NATS headers = %q, want %q", got, want)
	}
	root.End()
	spans := exp.GetSpans()
	if len(spans) < 3 {
		t.Fatalf("recorded %d spans, want root, client and server", len(spans))
	}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != want {
			t.Fatalf("span %q is in trace %s, want %s", s.Name, s.SpanContext.TraceID(), want)
		}
	}
}
