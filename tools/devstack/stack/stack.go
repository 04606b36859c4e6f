// Package stack starts the Bulwark platform as separate local processes — one
// per service, like a split deployment — against real Redis, NATS and Vault,
// for the end-to-end tests, the benchmarks and `make run-split`.
package stack

import (
	"bufio"
	"context"
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
	"sync"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/bulwarkhq/bulwark/services/identity"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// Spec describes how to run one service binary.
type Spec struct {
	// Name is the service's short name ("redaction"); its binary is services/<Name>/cmd/<Name>.
	Name string
	// ServiceNames are the fully qualified Connect services it serves, for health checks.
	ServiceNames []string
	// Env returns the service's environment (without its ADDR) given the stack so far.
	Env func(s *Stack) map[string]string
	// After, when set, runs once the service is healthy (e.g. identity registers the
	// stack's system principal, whose key the later services use).
	After func(ctx context.Context, s *Stack) error
}

// Params configures a Stack.
type Params struct {
	// Root is the repository root.
	Root string
	// BinDir receives the built binaries; empty means Root/.data/devstack/bin.
	BinDir string
	// DataDir holds per-process data and logs; empty means a new temporary directory.
	DataDir string
	// Specs are the services to start, in order. Empty means all of Services().
	Specs []Spec
	// RedisAddr of the real Redis. Empty means 127.0.0.1:6379.
	RedisAddr string
	// NATSURL of a real NATS with JetStream. Empty starts a nats-server of the
	// stack's own (JetStream store in DataDir): the Vault dev server forgets its
	// audit signing key on exit, so the audit stream must not outlive the stack.
	NATSURL string
	// VaultAddr and VaultToken of a running Vault; empty starts a dev server from Root/bin/vault.
	VaultAddr string
	// VaultToken is the token for VaultAddr.
	VaultToken string
	// Env is added to every service's environment.
	Env map[string]string
	// AdminKey is the bootstrap admin's key; empty generates one (Stack.AdminKey).
	AdminKey string
	// Environment the stack's keys work in; empty means "dev".
	Environment string
	// KeyPrefix starts the rate limiter's Redis keys; empty means a fresh "devstack:<random>:".
	KeyPrefix string
	// SimulatorURL is the provider simulator every catalog provider points at; empty
	// builds and starts tools/provsim as its own process.
	SimulatorURL string
	// Logger receives progress; each process's output goes to DataDir/<name>.log.
	Logger *slog.Logger
}

// Process is one running service.
type Process struct {
	// Name of the service.
	Name string
	// Addr is host:port it listens on.
	Addr string
	// URL is http://Addr.
	URL string
	// LogPath is where its output goes.
	LogPath string
	bin     string
	args    []string
	env     map[string]string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Stack is a running platform.
type Stack struct {
	params     Params
	Procs      map[string]*Process
	order      []string
	VaultAddr  string
	VaultToken string
	// AdminKey is the bootstrap admin's key.
	AdminKey string
	// SystemKey is the key of the stack's internal principal (role system).
	SystemKey string
	// SimulatorURL is where every provider of the router's catalog points.
	SimulatorURL string
	vaultProc    *Process
	simProc      *Process
	natsProc     *Process
	hashKey      string
	bucket       string
	ownPrefix    bool // the key prefix is this stack's own: Stop deletes its keys
	mu           sync.Mutex
}

// Build compiles the named services' binaries into binDir.
func Build(ctx context.Context, root, binDir string, names ...string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	pkgs := make([]string, 0, len(names))
	for _, n := range names {
		pkgs = append(pkgs, "./services/"+n+"/cmd/"+n)
	}
	return buildPackages(ctx, root, binDir, pkgs...)
}

func buildPackages(ctx context.Context, root, binDir string, pkgs ...string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", binDir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// Start builds and starts every spec in order, waiting for each to answer health.
func Start(ctx context.Context, p Params) (*Stack, error) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if p.BinDir == "" {
		p.BinDir = filepath.Join(p.Root, ".data", "devstack", "bin")
	}
	if p.DataDir == "" {
		dir, err := os.MkdirTemp("", "bulwark-devstack-")
		if err != nil {
			return nil, err
		}
		p.DataDir = dir
	}
	if p.RedisAddr == "" {
		p.RedisAddr = "127.0.0.1:6379"
	}
	if len(p.Specs) == 0 {
		p.Specs = Services()
	}
	if p.Environment == "" {
		p.Environment = "dev"
	}
	ownPrefix := p.KeyPrefix == ""
	if ownPrefix {
		p.KeyPrefix = "devstack:" + randomHex(6) + ":"
	}
	if p.AdminKey == "" {
		p.AdminKey = identity.GenerateKey(p.Environment)
	}
	names := make([]string, len(p.Specs))
	for i, s := range p.Specs {
		names[i] = s.Name
	}
	p.Logger.Info("building", "services", names)
	if err := Build(ctx, p.Root, p.BinDir, names...); err != nil {
		return nil, err
	}
	if p.SimulatorURL == "" {
		if err := buildPackages(ctx, p.Root, p.BinDir, "./tools/provsim/cmd/provsim"); err != nil {
			return nil, err
		}
	}
	s := &Stack{params: p, Procs: map[string]*Process{}, VaultAddr: p.VaultAddr, VaultToken: p.VaultToken,
		AdminKey: p.AdminKey, SimulatorURL: p.SimulatorURL, hashKey: randomHex(32), bucket: "bulwark_identity_" + randomHex(4),
		ownPrefix: ownPrefix}
	if s.VaultAddr == "" {
		if err := s.startVault(ctx); err != nil {
			return nil, err
		}
	}
	if s.params.NATSURL == "" {
		if err := s.startNATS(ctx); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	if err := s.seedProviderKeys(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if s.SimulatorURL == "" {
		if err := s.startSimulator(ctx); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	for _, spec := range p.Specs {
		if err := s.startService(ctx, spec); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// Redis returns the Redis address the stack uses.
func (s *Stack) Redis() string { return s.params.RedisAddr }

// NATS returns the NATS URL the stack uses.
func (s *Stack) NATS() string { return s.params.NATSURL }

// URL returns the base URL of a started service, or "" if it was not started.
func (s *Stack) URL(name string) string {
	if p, ok := s.Procs[name]; ok {
		return p.URL
	}
	return ""
}

// DataDir returns the directory holding the processes' data and logs.
func (s *Stack) DataDir() string { return s.params.DataDir }

// Vault returns a root client for the stack's Vault.
func (s *Stack) Vault() (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.VaultAddr
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(s.VaultToken)
	return c, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (s *Stack) spawn(name, bin string, args []string, env map[string]string) (*Process, error) {
	logPath := filepath.Join(s.params.DataDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for k, v := range s.params.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, bin: bin, args: args, env: env, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (s *Stack) startVault(ctx context.Context) error {
	bin := filepath.Join(s.params.Root, "bin", "vault")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("no Vault at %s: run `make vault`", bin)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	token := fmt.Sprintf("devstack-root-%d", time.Now().UnixNano())
	p, err := s.spawn("vault", bin, []string{"server", "-dev", "-dev-listen-address=" + addr, "-dev-root-token-id=" + token, "-dev-no-store-token"},
		map[string]string{"HOME": s.params.DataDir, "VAULT_LOG_LEVEL": "warn"})
	if err != nil {
		return err
	}
	s.vaultProc, s.VaultAddr, s.VaultToken = p, "http://"+addr, token
	c, err := s.Vault()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h, err := c.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault did not start; see %s", p.LogPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		return fmt.Errorf("mount transit: %w", err)
	}
	s.params.Logger.Info("vault dev server", "addr", s.VaultAddr)
	return nil
}

func (s *Stack) startService(ctx context.Context, spec Spec) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	env := map[string]string{}
	if spec.Env != nil {
		env = spec.Env(s)
	}
	env["BULWARK_"+strings.ToUpper(spec.Name)+"_ADDR"] = addr
	p, err := s.spawn(spec.Name, filepath.Join(s.params.BinDir, spec.Name), nil, env)
	if err != nil {
		return err
	}
	p.Addr, p.URL = addr, "http://"+addr
	s.mu.Lock()
	s.Procs[spec.Name] = p
	s.order = append(s.order, spec.Name)
	s.mu.Unlock()
	if err := waitHealthy(ctx, p, 60*time.Second); err != nil {
		return err
	}
	s.params.Logger.Info("started", "service", spec.Name, "url", p.URL)
	if spec.After != nil {
		if err := spec.After(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
	}
	return nil
}

// waitHealthy polls the overall gRPC health of p over the Connect protocol's
// GET-free JSON form until it answers SERVING.
func waitHealthy(ctx context.Context, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start (%v):\n%s", p.Name, p.waitErr, tail(p.LogPath, 30))
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if res, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Contains(string(body), "SERVING") && !strings.Contains(string(body), "NOT_SERVING") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s:\n%s", p.Name, timeout, tail(p.LogPath, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ExitError reports a process that did not exit cleanly on SIGTERM.
var ExitError = errors.New("process did not exit cleanly")

// Signal sends SIGTERM to one service and waits for it, returning its exit error.
func (s *Stack) Signal(name string, timeout time.Duration) error {
	p, ok := s.Procs[name]
	if !ok {
		return fmt.Errorf("no process %q", name)
	}
	return terminate(p, timeout)
}

func terminate(p *Process, timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("%w: %s: %v\n%s", ExitError, p.Name, p.waitErr, tail(p.LogPath, 20))
		}
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%w: %s still running %s after SIGTERM", ExitError, p.Name, timeout)
	}
}

// Stop sends SIGTERM to every process in reverse start order and reports any
// that did not exit with status 0.
func (s *Stack) Stop() error {
	var errs []error
	for i := len(s.order) - 1; i >= 0; i-- {
		if err := terminate(s.Procs[s.order[i]], 30*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if s.simProc != nil {
		_ = terminate(s.simProc, 10*time.Second)
	}
	if s.natsProc != nil {
		_ = terminate(s.natsProc, 10*time.Second)
	}
	if s.vaultProc != nil {
		_ = terminate(s.vaultProc, 10*time.Second)
	}
	if s.ownPrefix {
		errs = append(errs, ClearRedisPrefix(s.params.RedisAddr, s.params.KeyPrefix))
	}
	return errors.Join(errs...)
}

// ClearRedisPrefix deletes the keys a run left under its own prefix (limits,
// reservations, anomaly baselines and markers), so that runs do not pile up
// in a shared Redis.
func ClearRedisPrefix(addr, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: addr, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("clear %s keys: %w", prefix, err)
	}
	defer rdb.Close()
	if _, err := platform.DeleteKeys(ctx, rdb, prefix); err != nil {
		return fmt.Errorf("clear %s keys: %w", prefix, err)
	}
	return nil
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// RepoRoot walks up from the working directory to the directory holding go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory")
		}
		dir = parent
	}
}
