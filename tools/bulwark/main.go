// Command bulwark is the all-in-one Bulwark: every service in one process on
// one port, with embedded defaults so `go run ./tools/bulwark` works on a
// laptop with no configuration, no internet and no provider keys.
//
//	bulwark          serve (same as `bulwark serve`)
//	bulwark demo     a scripted tour against a running instance
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/allinone"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, os.Stdout)
	case "demo":
		err = demo.Run(ctx, demo.ConfigFromEnv(), os.Stdout)
	case "help", "-h", "--help":
		fmt.Println("usage: bulwark [serve|demo]\n\n  serve  run every Bulwark service in one process (default)\n  demo   scripted tour against a running instance (BULWARK_URL, BULWARK_ADMIN_KEY)")
		return
	default:
		err = fmt.Errorf("unknown command %q (try: bulwark help)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bulwark:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, out io.Writer) error {
	cfg, err := allinone.LoadConfig()
	if err != nil {
		return err
	}
	log := platform.NewLogger(cfg.LogFormat, cfg.LogLevel)
	log.InfoContext(ctx, "starting bulwark (all-in-one)", "config", platform.ConfigValue(cfg))
	in, err := allinone.Start(ctx, allinone.Params{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	banner(out, in)
	if err := in.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("bulwark stopped")
	return nil
}

func banner(out io.Writer, in *allinone.Instance) {
	fmt.Fprintf(out, "\nBulwark is running at %s\n", in.URL)
	fmt.Fprintf(out, "  OpenAI SDK base URL:    %s/v1\n  Anthropic SDK base URL: %s\n", in.URL, in.URL)
	fmt.Fprintf(out, "  NATS: %s   Redis: %s   Vault: %s\n", in.NATS, in.RedisAddr, in.VaultKind)
	if in.Sim != nil {
		fmt.Fprintf(out, "  Providers: the built-in simulator (no internet, no provider keys); what it received: %s%s\n", in.URL, allinone.SimRequestsPath)
	}
	switch {
	case in.AdminCreated && in.AdminKey != "":
		fmt.Fprintf(out, "\n  Admin key (shown once, store it now):\n\n    %s\n\n  export BULWARK_ADMIN_KEY=%s\n\n", in.AdminKey, in.AdminKey)
	case in.AdminKey != "":
		fmt.Fprintln(out, "  Admin key: the one in BULWARK_BOOTSTRAP_ADMIN_KEY")
	default:
		fmt.Fprintln(out, "  Admin: already created; its key was printed on the first start (BULWARK_BOOTSTRAP_ADMIN_KEY supplies a known one)")
	}
	fmt.Fprintln(out)
}
