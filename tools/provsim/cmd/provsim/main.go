// Command provsim serves the provider simulator (OpenAI, Azure OpenAI and Anthropic
// wire formats) on a local address for development and end-to-end tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.ErrorContext(ctx, "provsim stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("provsim", flag.ContinueOnError)
	addr := fs.String("addr", envOr("PROVSIM_ADDR", "127.0.0.1:8090"), "listen address")
	reply := fs.String("reply", os.Getenv("PROVSIM_REPLY"), "fixed reply instead of echoing the last user message")
	keys := fs.String("keys", os.Getenv("PROVSIM_API_KEYS"), "comma-separated accepted API keys (empty accepts any)")
	delay := fs.Duration("chunk-delay", 0, "delay between streamed events")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	var keyList []string
	if *keys != "" {
		keyList = strings.Split(*keys, ",")
	}
	s := sim.New(sim.Params{Logger: log, Reply: *reply, APIKeys: keyList, ChunkDelay: *delay})
	s.SetRecording(false)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv.Protocols = &protos
	log.InfoContext(ctx, "provsim listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
