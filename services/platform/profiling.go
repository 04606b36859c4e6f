package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ProfilingConfig turns on Go's runtime profiles (CPU, heap, goroutines,
// mutex, block) for one process. Every service reads it with the prefix
// "BULWARK_" when it starts serving.
type ProfilingConfig struct {
	// Addr is a loopback host:port for /debug/pprof/; empty (the default) serves nothing.
	// Profiles show code paths and goroutine stacks, so only loopback is accepted.
	Addr string `env:"PPROF_ADDR" default:""`
}

// ErrProfilingConfig reports a profiling address that is not loopback.
var ErrProfilingConfig = errors.New("profiling config")

// ProfilingHandler serves the runtime profiles under /debug/pprof/.
func ProfilingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startProfiling serves ProfilingHandler on cfg.Addr until ctx is done. It
// returns the bound address ("" when profiling is off).
func startProfiling(ctx context.Context, cfg ProfilingConfig, log *slog.Logger) (string, error) {
	if cfg.Addr == "" {
		return "", nil
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return "", fmt.Errorf("%w: BULWARK_PPROF_ADDR %q: %w", ErrProfilingConfig, cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("%w: BULWARK_PPROF_ADDR %q must be a loopback address (127.0.0.1, ::1 or localhost)", ErrProfilingConfig, cfg.Addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return "", fmt.Errorf("profiling: listen on %s: %w", cfg.Addr, err)
	}
	// No write timeout: a CPU profile or trace streams for as long as asked.
	srv := &http.Server{Handler: ProfilingHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.WarnContext(ctx, "runtime profiles served (BULWARK_PPROF_ADDR); turn off outside diagnosis", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}
