package platform_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// panicky implements only ListProfiles, and panics there, to exercise the chain.
type panicky struct {
	redactionv1connect.UnimplementedRedactionServiceHandler
}

// echoer answers Inspect with the request's text: a response as large as the request.
type echoer struct {
	redactionv1connect.UnimplementedRedactionServiceHandler
}

func (echoer) Inspect(_ context.Context, req *connect.Request[redactionv1.InspectRequest]) (*connect.Response[redactionv1.InspectResponse], error) {
	return connect.NewResponse(&redactionv1.InspectResponse{DataClasses: []string{req.Msg.GetText()}}), nil
}

func (panicky) ListProfiles(context.Context, *connect.Request[redactionv1.ListProfilesRequest]) (*connect.Response[redactionv1.ListProfilesResponse], error) {
	panic("boom")
}

func newTestServer(t *testing.T, auth platform.AuthFunc) (*platform.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := platform.NewLoggerTo(&logs, "json", "debug")
	reg := platform.NewRegistry()
	opts := platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg), Auth: auth})
	path, h := redactionv1connect.NewRedactionServiceHandler(panicky{}, opts...)
	srv, err := platform.NewServer(platform.ServerParams{
		Name: "test", Logger: log, Registry: reg, MaxRequestBytes: 1024,
		Services: []platform.Service{{Name: redactionv1connect.RedactionServiceName, Path: path, Handler: h}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, &logs
}

func TestServer_ServesHealthOverConnectAndGRPC(t *testing.T) {
	srv, _ := newTestServer(t, nil)
	url := platformtest.Serve(t, srv.Handler())
	for _, opt := range []connect.ClientOption{connect.WithGRPC(), connect.WithGRPCWeb()} {
		client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](platform.HTTPClient(), url+"/grpc.health.v1.Health/Check", opt)
		res, err := client.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{Service: redactionv1connect.RedactionServiceName}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status = %v, want SERVING", res.Msg.GetStatus())
		}
	}
}

func TestServer_GRPCGoClientSeesHealthAndReflection(t *testing.T) {
	srv, _ := newTestServer(t, nil)
	url := platformtest.Serve(t, srv.Handler())
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall health = %v, %v", h.GetStatus(), err)
	}
	stream, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !contains(names, redactionv1connect.RedactionServiceName) || !contains(names, grpchealth.HealthV1ServiceName) {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestServer_CompressesOnlyLargeResponses(t *testing.T) {
	path, h := redactionv1connect.NewRedactionServiceHandler(echoer{}, platform.HandlerOptions(platform.InterceptorParams{Logger: slog.New(slog.DiscardHandler)})...)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	url := platformtest.Serve(t, mux)
	for _, tc := range []struct {
		size int
		want string
	}{{100, ""}, {platform.CompressMinBytes - 100, ""}, {2 * platform.CompressMinBytes, "gzip"}} {
		body := `{"text":"` + strings.Repeat("a", tc.size) + `"}`
		req, err := http.NewRequest(http.MethodPost, url+"/bulwark.redaction.v1.RedactionService/Inspect", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != tc.want {
			t.Errorf("%d-byte response: status %d, Content-Encoding %q, want %q", tc.size, res.StatusCode, res.Header.Get("Content-Encoding"), tc.want)
		}
	}
}

func TestServer_UnimplementedRPCAnswersUnimplemented(t *testing.T) {
	srv, _ := newTestServer(t, nil)
	url := platformtest.Serve(t, srv.Handler())
	for _, opt := range []connect.ClientOption{connect.WithProtoJSON(), connect.WithGRPC()} {
		c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, opt)
		_, err := c.Inspect(context.Background(), connect.NewRequest(&redactionv1.InspectRequest{Text: "hi"}))
		if connect.CodeOf(err) != connect.CodeUnimplemented {
			t.Fatalf("code = %v, want unimplemented", connect.CodeOf(err))
		}
	}
}

func TestServer_RecoversPanicsAsInternalAndCountsThem(t *testing.T) {
	srv, logs := newTestServer(t, nil)
	url := platformtest.Serve(t, srv.Handler())
	c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, connect.WithGRPC())
	_, err := c.ListProfiles(context.Background(), connect.NewRequest(&redactionv1.ListProfilesRequest{}))
	if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want internal without the panic text", err)
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := `bulwark_rpc_requests_total{code="internal",procedure="/bulwark.redaction.v1.RedactionService/ListProfiles"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("/metrics lacks %q", want)
	}
}

func TestServer_AuthHookRejectsBeforeHandler(t *testing.T) {
	auth := func(ctx context.Context, _ connect.Spec, h http.Header) (context.Context, error) {
		if h.Get("Authorization") != "Bearer ok" {
			return nil, connect.NewError(connect.CodeUnauthenticated, nil)
		}
		return ctx, nil
	}
	srv, _ := newTestServer(t, auth)
	url := platformtest.Serve(t, srv.Handler())
	c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url)
	_, err := c.Inspect(context.Background(), connect.NewRequest(&redactionv1.InspectRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("code = %v, want unauthenticated", connect.CodeOf(err))
	}
	req := connect.NewRequest(&redactionv1.InspectRequest{})
	req.Header().Set("Authorization", "Bearer ok")
	if _, err := c.Inspect(context.Background(), req); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("authorized call: code = %v, want unimplemented", connect.CodeOf(err))
	}
}

func TestServer_RejectsBodiesOverTheLimit(t *testing.T) {
	srv, _ := newTestServer(t, nil)
	url := platformtest.Serve(t, srv.Handler())
	c := redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url)
	_, err := c.Inspect(context.Background(), connect.NewRequest(&redactionv1.InspectRequest{Text: strings.Repeat("x", 4096)}))
	if err == nil {
		t.Fatal("oversized request was accepted")
	}
}

func TestServer_ShutsDownGracefullyWhenContextEnds(t *testing.T) {
	srv, _ := newTestServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	client := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](platform.HTTPClient(), "http://"+ln.Addr().String()+"/grpc.health.v1.Health/Check", connect.WithGRPC())
	if _, err := client.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{})); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestNewServer_RejectsMissingLogger(t *testing.T) {
	if _, err := platform.NewServer(platform.ServerParams{Name: "x"}); err == nil {
		t.Fatal("want error")
	}
	_ = slog.Default()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
