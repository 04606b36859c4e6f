package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"time"

	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Service is one generated Connect handler to mount, as returned by the
// generated New<Name>ServiceHandler constructors.
type Service struct {
	// Name is the fully qualified service name, e.g. redactionv1connect.RedactionServiceName.
	Name string
	// Path is the URL prefix the generated constructor returned.
	Path string
	// Handler serves the service.
	Handler http.Handler
}

// ServerParams configures a Server. Zero values get the defaults noted per field.
type ServerParams struct {
	// Name of the process, used in logs ("redaction", "bulwark").
	Name string
	// Logger receives start, stop and error logs. Required.
	Logger *slog.Logger
	// Services are the Connect services to mount and report in health and reflection.
	Services []Service
	// Routes are extra HTTP handlers by ServeMux pattern, e.g. the gateway's "/v1/".
	Routes map[string]http.Handler
	// Registry collects metrics for /metrics. Nil means a new registry with Go and process collectors.
	Registry *prometheus.Registry
	// MaxRequestBytes caps request bodies. 0 means 16 MiB.
	MaxRequestBytes int64
	// ReadHeaderTimeout bounds slow clients sending headers. 0 means 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. 0 means 120 s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown (drain). 0 means 30 s.
	ShutdownTimeout time.Duration
}

// Server serves Connect, gRPC and gRPC-Web on one h2c port.
type Server struct {
	params ServerParams
	mux    *http.ServeMux
	health *grpchealth.StaticChecker
	http   *http.Server
}

// ErrInvalidParams reports a Server configured wrongly.
var ErrInvalidParams = errors.New("invalid server params")

// NewServer validates params and builds the handler tree.
func NewServer(p ServerParams) (*Server, error) {
	if p.Logger == nil {
		return nil, fmt.Errorf("%w: Logger is required", ErrInvalidParams)
	}
	if p.Name == "" {
		return nil, fmt.Errorf("%w: Name is required", ErrInvalidParams)
	}
	if p.Registry == nil {
		p.Registry = NewRegistry()
	}
	if p.MaxRequestBytes == 0 {
		p.MaxRequestBytes = 16 << 20
	}
	if p.ReadHeaderTimeout == 0 {
		p.ReadHeaderTimeout = 10 * time.Second
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = 120 * time.Second
	}
	if p.ShutdownTimeout == 0 {
		p.ShutdownTimeout = 30 * time.Second
	}
	names := make([]string, 0, len(p.Services))
	mux := http.NewServeMux()
	for _, s := range p.Services {
		if s.Name == "" || s.Path == "" || s.Handler == nil {
			return nil, fmt.Errorf("%w: service %q needs Name, Path and Handler", ErrInvalidParams, s.Name)
		}
		names = append(names, s.Name)
		mux.Handle(s.Path, s.Handler)
	}
	sort.Strings(names)
	health := grpchealth.NewStaticChecker(names...)
	mux.Handle(grpchealth.NewHandler(health))
	reflector := grpcreflect.NewStaticReflector(append(names, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.Handle("/metrics", promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{Registry: p.Registry}))
	for pattern, h := range p.Routes {
		mux.Handle(pattern, h)
	}
	s := &Server{params: p, mux: mux, health: health}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: p.ReadHeaderTimeout,
		IdleTimeout:       p.IdleTimeout,
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(p.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler returns the full handler tree with the request size limit applied,
// for tests that run it under httptest.
func (s *Server) Handler() http.Handler {
	limit := s.params.MaxRequestBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		s.mux.ServeHTTP(w, r)
	})
}

// Health returns the health checker, so a service can report NOT_SERVING while
// a dependency is down.
func (s *Server) Health() *grpchealth.StaticChecker { return s.health }

// Registry returns the metrics registry served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.params.Registry }

// Serve accepts connections on ln until ctx is done, then stops accepting,
// reports NOT_SERVING, and drains in-flight requests for at most ShutdownTimeout.
// With BULWARK_PPROF_ADDR set it also serves the runtime profiles there.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.params.Logger
	var prof ProfilingConfig
	if err := LoadConfig("BULWARK_", &prof); err != nil {
		return err
	}
	profCtx, stopProfiling := context.WithCancel(ctx)
	defer stopProfiling()
	if _, err := startProfiling(profCtx, prof, log); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	log.InfoContext(ctx, "serving", "service", s.params.Name, "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.params.Name, err)
	case <-ctx.Done():
	}
	for _, svc := range s.params.Services {
		s.health.SetStatus(svc.Name, grpchealth.StatusNotServing)
	}
	log.Info("shutting down", "service", s.params.Name, "drain", s.params.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.params.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down %s: %w", s.params.Name, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", s.params.Name, err)
	}
	log.Info("stopped", "service", s.params.Name)
	return nil
}

// ListenAndServe listens on addr and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}
