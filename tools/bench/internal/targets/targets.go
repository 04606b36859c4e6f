// Package targets starts (or names) the system a bench run measures and the
// provider simulator it is compared with: the all-in-one binary, the split
// deployment of tools/devstack, or a URL already running on this machine.
package targets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/tools/devstack/stack"
)

// Target is a running system under test and its direct baseline.
type Target struct {
	Kind string
	// GatewayURL is the base URL of the gateway (no /v1).
	GatewayURL string
	// DirectURL is the base URL of the provider simulator the gateway calls ("" for none).
	DirectURL string
	// Key is the app key the gateway accepts; DirectKey is the simulator's credential.
	Key, DirectKey string
	// Notes describe the setup for the report (which Vault, where logs are).
	Notes []string
	stop  []func() error
}

// Stop ends every process the target started, in reverse order.
func (t *Target) Stop() error {
	var errs []error
	for i := len(t.stop) - 1; i >= 0; i-- {
		errs = append(errs, t.stop[i]())
	}
	return errors.Join(errs...)
}

// Options configure Start.
type Options struct {
	Kind string // allinone | split | url
	// URL, Key and DirectURL name an already running gateway (Kind url).
	URL, Key, DirectURL string
	// VaultAddr and VaultToken of a running Vault for split mode (else bin/vault).
	VaultAddr, VaultToken string
	// RedisAddr of the real Redis (default 127.0.0.1:6379; each run uses a fresh key prefix).
	RedisAddr string
	// NATSURL of a NATS with JetStream for split mode; empty starts a private
	// nats-server for the run, because the audit stream a run leaves behind is
	// signed with that run's Vault key and would not verify under the next one.
	NATSURL string
	Logger  *slog.Logger
}

// Start builds and starts the target and provisions the bench principal and policy.
func Start(ctx context.Context, o Options) (*Target, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RedisAddr == "" {
		o.RedisAddr = "127.0.0.1:6379"
	}
	switch o.Kind {
	case "url":
		if o.URL == "" || o.Key == "" {
			return nil, errors.New("--target url needs --url and --key")
		}
		return &Target{Kind: "url", GatewayURL: strings.TrimRight(o.URL, "/"), DirectURL: strings.TrimRight(o.DirectURL, "/"),
			Key: o.Key, DirectKey: "bench-direct"}, nil
	case "allinone":
		return startAllInOne(ctx, o)
	case "split":
		return startSplit(ctx, o)
	default:
		return nil, fmt.Errorf("unknown target %q (allinone, split or url)", o.Kind)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func build(ctx context.Context, root, binDir string, pkgs ...string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", binDir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is a child process in its own process group.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

func spawn(name, bin, logPath string, args []string, env map[string]string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// waitHTTP polls url until it answers want (0: any status), the process exits, or timeout.
func waitHTTP(ctx context.Context, p *proc, method, url, body string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start (%v); see %s", p.name, p.err, p.log)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if res, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if want == 0 || (res.StatusCode == want && !strings.Contains(string(b), "NOT_SERVING")) {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s; see %s", p.name, timeout, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startSimulator runs tools/provsim as its own process (zero added latency).
func startSimulator(ctx context.Context, bin, dataDir string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := spawn("provsim", bin, filepath.Join(dataDir, "provsim.log"), []string{"-addr", addr}, nil)
	if err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	if err := waitHTTP(ctx, p, http.MethodGet, url+"/v1/models", "", 0, 30*time.Second); err != nil {
		_ = p.stop()
		return nil, "", err
	}
	return p, url, nil
}

// startAllInOne builds tools/bulwark and runs it on a free loopback port with a
// known bootstrap admin key, the real Redis, an embedded NATS and Vault from
// VAULT_ADDR, bin/vault or the development secret file (as the binary decides).
// Its providers are its built-in simulator (in its own process); the direct
// baseline is a provsim process of the same code.
func startAllInOne(ctx context.Context, o Options) (_ *Target, err error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(root, ".data", "bench", "bin")
	o.Logger.Info("building tools/bulwark and tools/provsim")
	if err := build(ctx, root, binDir, "./tools/bulwark", "./tools/provsim/cmd/provsim"); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "bulwark-bench-")
	if err != nil {
		return nil, err
	}
	t := &Target{Kind: "allinone", DirectKey: "bench-direct"}
	defer func() {
		if err != nil {
			_ = t.Stop()
		}
	}()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminKey := identity.GenerateKey("dev")
	prefix := "bench:" + randomHex(6) + ":"
	t.stop = append(t.stop, func() error { return stack.ClearRedisPrefix(o.RedisAddr, prefix) })
	env := map[string]string{
		"BULWARK_ADDR":                 addr,
		"BULWARK_DATA_DIR":             filepath.Join(dataDir, "bulwark"),
		"BULWARK_LOG_LEVEL":            "warn",
		"BULWARK_BOOTSTRAP_ADMIN_KEY":  adminKey,
		"BULWARK_REDIS_ADDR":           o.RedisAddr,
		"BULWARK_RATELIMIT_KEY_PREFIX": prefix,
	}
	gw, err := spawn("bulwark", filepath.Join(binDir, "bulwark"), filepath.Join(dataDir, "bulwark.log"), nil, env)
	if err != nil {
		return nil, err
	}
	t.stop = append(t.stop, gw.stop)
	t.GatewayURL = "http://" + addr
	o.Logger.Info("waiting for the all-in-one", "url", t.GatewayURL, "log", gw.log)
	if err := waitHTTP(ctx, gw, http.MethodPost, t.GatewayURL+"/grpc.health.v1.Health/Check", "{}", http.StatusOK, 5*time.Minute); err != nil {
		return nil, err
	}
	sp, simURL, err := startSimulator(ctx, filepath.Join(binDir, "provsim"), dataDir)
	if err != nil {
		return nil, err
	}
	t.stop = append(t.stop, sp.stop)
	t.DirectURL = simURL
	if t.Key, err = Provision(ctx, t.GatewayURL, t.GatewayURL, adminKey); err != nil {
		return nil, fmt.Errorf("provision: %w (log: %s)", err, gw.log)
	}
	vault := "VAULT_ADDR"
	if os.Getenv("VAULT_ADDR") == "" {
		vault = "bin/vault dev server"
		if _, err := os.Stat(filepath.Join(root, "bin", "vault")); err != nil {
			vault = "development secret file (no bin/vault)"
		}
	}
	t.Notes = append(t.Notes, "all-in-one: one process (tools/bulwark), Redis "+o.RedisAddr+", embedded NATS, Vault: "+vault+
		"; its providers are its built-in simulator; direct baseline: a provsim process", "logs: "+dataDir)
	return t, nil
}

// startSplit runs every service as its own process with tools/devstack against
// the real Redis and NATS and a Vault dev server; the simulator is a provsim
// process that both the router and the direct baseline call.
func startSplit(ctx context.Context, o Options) (*Target, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "bulwark-bench-split-")
	if err != nil {
		return nil, err
	}
	var natsProc *proc
	if o.NATSURL == "" {
		var err error
		if natsProc, o.NATSURL, err = startNATS(ctx, dataDir); err != nil {
			return nil, err
		}
	}
	stopNATS := func() error {
		if natsProc != nil {
			return natsProc.stop()
		}
		return nil
	}
	o.Logger.Info("starting the split deployment (tools/devstack)", "data", dataDir, "nats", o.NATSURL)
	// its own bin directory: other users of tools/devstack rebuild the shared one.
	st, err := stack.Start(ctx, stack.Params{Root: root, BinDir: filepath.Join(root, ".data", "bench", "split-bin"), DataDir: dataDir, RedisAddr: o.RedisAddr, NATSURL: o.NATSURL,
		VaultAddr: o.VaultAddr, VaultToken: o.VaultToken, Logger: o.Logger,
		Env: map[string]string{"BULWARK_GATEWAY_LOG_LEVEL": "warn"}})
	if err != nil {
		_ = stopNATS()
		return nil, err
	}
	t := &Target{Kind: "split", GatewayURL: st.URL("gateway"), DirectURL: st.SimulatorURL, DirectKey: "bench-direct",
		stop: []func() error{stopNATS, st.Stop}}
	if t.Key, err = Provision(ctx, st.URL("identity"), t.GatewayURL, st.AdminKey); err != nil {
		_ = t.Stop()
		return nil, fmt.Errorf("provision: %w (logs: %s)", err, dataDir)
	}
	t.Notes = append(t.Notes, "split: one process per service (tools/devstack), Redis "+o.RedisAddr+", NATS "+o.NATSURL+
		", a Vault dev server; the router and the direct baseline call the same provsim process", "logs: "+dataDir)
	return t, nil
}

// ProviderBodies returns the request bodies the all-in-one's built-in simulator
// has recorded (its development endpoint), to check what reached the provider.
func (t *Target) ProviderBodies(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.GatewayURL+"/_dev/provsim/requests", nil)
	if err != nil {
		return nil, err
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	var recs []struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(&recs); err != nil {
		return nil, err
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Body)
	}
	return out, nil
}

// startNATS runs a private nats-server with JetStream under dataDir.
func startNATS(ctx context.Context, dataDir string) (*proc, string, error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		return nil, "", fmt.Errorf("split mode needs nats-server on PATH (or --nats-url): %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, err := spawn("nats-server", bin, filepath.Join(dataDir, "nats.log"),
		[]string{"-a", host, "-p", port, "-js", "-sd", filepath.Join(dataDir, "jetstream"), "--server_name", "bench"}, nil)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p, "nats://" + addr, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = p.stop()
			return nil, "", fmt.Errorf("nats-server not listening on %s; see %s", addr, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
