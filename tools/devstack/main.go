// Command devstack runs the whole Bulwark platform locally as separate
// processes — one per service, as in a split deployment — against the real
// Redis and NATS (see `make deps`) and a Vault dev server it starts from
// bin/vault. It prints each service's URL and stops them all on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulwarkhq/bulwark/tools/devstack/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("devstack failed", "error", err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	s, err := stack.Start(ctx, stack.Params{Root: root, Logger: log, RedisAddr: os.Getenv("BULWARK_REDIS_ADDR"), NATSURL: os.Getenv("BULWARK_NATS_URL")})
	if err != nil {
		return err
	}
	for name, p := range s.Procs {
		fmt.Printf("%-10s %s   (log: %s)\n", name, p.URL, p.LogPath)
	}
	fmt.Printf("%-10s %s\n", "vault", s.VaultAddr)
	fmt.Printf("%-10s %s\n", "provsim", s.SimulatorURL)
	fmt.Printf("\nOpenAI SDK base URL: %s/v1\nadmin key: %s\n", s.URL("gateway"), s.AdminKey)
	<-ctx.Done()
	return s.Stop()
}
