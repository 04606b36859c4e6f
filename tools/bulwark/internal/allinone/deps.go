package allinone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	vault "github.com/hashicorp/vault/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/devvault"
)

// closer collects cleanups, run in reverse order.
type closer []func()

func (c *closer) add(f func()) { *c = append(*c, f) }

func (c *closer) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// openNATS connects to NATSURL, or starts an embedded NATS server with
// JetStream under dataDir/nats that only this process can reach.
func openNATS(ctx context.Context, cfg Config, log *slog.Logger, c *closer) (*nats.Conn, jetstream.JetStream, string, error) {
	if cfg.NATSURL != "" {
		nc, js, err := platform.ConnectNATS(ctx, platform.NATSConfig{URL: cfg.NATSURL, Name: "bulwark", ConnectTimeout: 5 * time.Second}, log)
		if err != nil {
			return nil, nil, "", err
		}
		c.add(func() { _ = nc.Drain() })
		return nc, js, cfg.NATSURL, nil
	}
	dir := filepath.Join(cfg.DataDir, "nats")
	port := -1
	if cfg.NATSPort != 0 {
		port = cfg.NATSPort
	}
	srv, err := platform.StartEmbeddedNATS(platform.EmbeddedNATSParams{Dir: dir, Port: port})
	if err != nil {
		return nil, nil, "", err
	}
	nc, js, err := platform.ConnectNATS(ctx, platform.NATSConfig{URL: "nats://in-process", Name: "bulwark", ConnectTimeout: 5 * time.Second}, log,
		nats.InProcessServer(srv))
	if err != nil {
		srv.Shutdown()
		return nil, nil, "", err
	}
	c.add(func() {
		_ = nc.Drain()
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	where := "in-process only"
	if port > 0 {
		where = srv.ClientURL()
	}
	log.InfoContext(ctx, "embedded NATS with JetStream", "store_dir", dir, "clients", where)
	return nc, js, where, nil
}

// ErrEmbeddedRedis reports that the embedded Redis cannot serve the rate limiter.
var ErrEmbeddedRedis = errors.New("the embedded Redis-protocol server cannot run the rate limiter's scripts; start Redis (make deps) or set BULWARK_REDIS_ADDR")

// openRedis uses RedisAddr; without one, Redis at 127.0.0.1:6379 if it answers,
// otherwise (or with RedisAddr "embedded") an embedded Redis-protocol server
// (miniredis), for development only.
func openRedis(ctx context.Context, cfg Config, log *slog.Logger, c *closer) (redis.UniversalClient, string, error) {
	if cfg.RedisAddr != "" && cfg.RedisAddr != EmbeddedRedis {
		rdb, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: cfg.RedisAddr, Cluster: cfg.RedisCluster, MasterName: cfg.RedisMasterName,
			DialTimeout: 2 * time.Second, ReadTimeout: time.Second})
		if err != nil {
			return nil, "", err
		}
		c.add(func() { _ = rdb.Close() })
		return rdb, cfg.RedisAddr, nil
	}
	const local = "127.0.0.1:6379"
	if cfg.RedisAddr == EmbeddedRedis {
		return embeddedRedis(ctx, log, c)
	}
	probe := redis.NewClient(&redis.Options{Addr: local, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := probe.Ping(pctx).Err()
	cancel()
	_ = probe.Close()
	if err == nil {
		rdb, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: local, DialTimeout: 2 * time.Second, ReadTimeout: time.Second})
		if err != nil {
			return nil, "", err
		}
		c.add(func() { _ = rdb.Close() })
		log.InfoContext(ctx, "using Redis", "addr", local)
		return rdb, local, nil
	}
	return embeddedRedis(ctx, log, c)
}

// EmbeddedRedis as BULWARK_REDIS_ADDR forces the embedded Redis-protocol server.
const EmbeddedRedis = "embedded"

func embeddedRedis(ctx context.Context, log *slog.Logger, c *closer) (redis.UniversalClient, string, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, "", fmt.Errorf("start embedded redis: %w", err)
	}
	c.add(mr.Close)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	c.add(func() { _ = rdb.Close() })
	log.WarnContext(ctx, "DEV ONLY: no Redis at 127.0.0.1:6379; using an embedded in-memory Redis-protocol server (miniredis). Limits and budgets reset on restart and are not shared between instances. Set BULWARK_REDIS_ADDR for real use.",
		"addr", mr.Addr())
	return rdb, "embedded:" + mr.Addr(), nil
}

// vaultInfo is the Vault the instance uses.
type vaultInfo struct {
	Client *vault.Client
	Addr   string
	Token  string
	Kind   string // "external", "dev-server", "dev-file"
}

// openVault uses VAULT_ADDR (with VAULT_TOKEN or AppRole) when set; otherwise
// the project's Vault binary (bin/vault) as a child process with file storage
// under dataDir/vault, so keys survive restarts; otherwise a development-only
// secret file served through the Vault API.
func openVault(ctx context.Context, cfg Config, log *slog.Logger, c *closer) (vaultInfo, error) {
	if cfg.VaultAddr != "" {
		vc, err := platform.NewVault(ctx, platform.VaultConfig{Addr: cfg.VaultAddr, Token: cfg.VaultToken,
			RoleID: cfg.VaultRoleID, SecretID: cfg.VaultSecretID, AppRoleMount: "approle"}, log)
		if err != nil {
			return vaultInfo{}, err
		}
		log.InfoContext(ctx, "using Vault", "addr", cfg.VaultAddr)
		return vaultInfo{Client: vc, Addr: cfg.VaultAddr, Token: cfg.VaultToken.Reveal(), Kind: "external"}, nil
	}
	if bin := vaultBinary(cfg); bin != "" {
		vi, err := startVaultChild(ctx, bin, filepath.Join(cfg.DataDir, "vault"), log, c)
		if err != nil {
			return vaultInfo{}, fmt.Errorf("start the development Vault (%s): %w", bin, err)
		}
		return vi, nil
	}
	path := filepath.Join(cfg.DataDir, "dev-secrets.json")
	token := randomHex(16)
	dv, err := devvault.Open(path, token)
	if err != nil {
		return vaultInfo{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return vaultInfo{}, err
	}
	hs := &http.Server{Handler: dv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	c.add(func() { _ = hs.Close() })
	addr := "http://" + ln.Addr().String()
	vc, err := newVaultClient(addr, token)
	if err != nil {
		return vaultInfo{}, err
	}
	log.WarnContext(ctx, "DEV ONLY: no VAULT_ADDR and no bin/vault; provider keys, the API-key pepper and the audit signing key are kept UNENCRYPTED in a local file. Never use this outside a laptop demo; run `make vault` or set VAULT_ADDR.",
		"file", path)
	return vaultInfo{Client: vc, Addr: addr, Token: token, Kind: "dev-file"}, nil
}

func newVaultClient(addr, token string) (*vault.Client, error) {
	vcfg := vault.DefaultConfig()
	vcfg.Address = addr
	vcfg.Timeout = 10 * time.Second
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, err
	}
	vc.SetToken(token)
	return vc, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// vaultBinary finds the project's Vault: BULWARK_VAULT_BIN, bin/vault in the
// current directory or the repository root above it, or none.
func vaultBinary(cfg Config) string {
	if cfg.VaultBin != "" {
		if cfg.VaultBin == "none" {
			return ""
		}
		return cfg.VaultBin
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "bin", "vault")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// vaultInit is what `vault operator init` returned for the development server.
type vaultInit struct {
	UnsealKey string `json:"unseal_key"`
	RootToken string `json:"root_token"`
}

// startVaultChild runs a real Vault server with file storage (not -dev, which
// forgets everything on exit), initialises it once with a single unseal key
// kept beside its data (development only), and unseals it on every start.
func startVaultChild(ctx context.Context, bin, dir string, log *slog.Logger, c *closer) (vaultInfo, error) {
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o700); err != nil {
		return vaultInfo{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return vaultInfo{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf("storage \"file\" {\n  path = %q\n}\nlistener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\ndisable_mlock = true\napi_addr = %q\nui = false\n",
		filepath.Join(dir, "storage"), addr, "http://"+addr)
	confPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return vaultInfo{}, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return vaultInfo{}, err
	}
	cmd := exec.Command(bin, "server", "-config="+confPath, "-log-level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return vaultInfo{}, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.add(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	vc, err := newVaultClient("http://"+addr, "")
	if err != nil {
		return vaultInfo{}, err
	}
	deadline := time.Now().Add(60 * time.Second)
	var inited bool
	for {
		select {
		case <-done:
			return vaultInfo{}, fmt.Errorf("vault exited; see %s", filepath.Join(dir, "vault.log"))
		default:
		}
		st, err := vc.Sys().InitStatusWithContext(ctx)
		if err == nil {
			inited = st
			break
		}
		if time.Now().After(deadline) {
			return vaultInfo{}, fmt.Errorf("vault not answering: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	initPath := filepath.Join(dir, "init.json")
	var in vaultInit
	first := false
	if !inited {
		res, err := vc.Sys().InitWithContext(ctx, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return vaultInfo{}, fmt.Errorf("vault init: %w", err)
		}
		in = vaultInit{UnsealKey: res.KeysB64[0], RootToken: res.RootToken}
		b, _ := json.Marshal(in)
		if err := os.WriteFile(initPath, b, 0o600); err != nil {
			return vaultInfo{}, err
		}
		first = true
	} else {
		b, err := os.ReadFile(initPath)
		if err != nil {
			return vaultInfo{}, fmt.Errorf("vault storage at %s is initialised but its unseal key is missing (%w); remove %s to start over", dir, err, dir)
		}
		if err := json.Unmarshal(b, &in); err != nil {
			return vaultInfo{}, err
		}
	}
	if _, err := vc.Sys().UnsealWithContext(ctx, in.UnsealKey); err != nil {
		return vaultInfo{}, fmt.Errorf("vault unseal: %w", err)
	}
	vc.SetToken(in.RootToken)
	for {
		_, err := vc.Auth().Token().LookupSelfWithContext(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return vaultInfo{}, fmt.Errorf("vault not active after unseal: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mounts, err := vc.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return vaultInfo{}, fmt.Errorf("vault mounts: %w", err)
	}
	if _, ok := mounts["secret/"]; !ok {
		if err := vc.Sys().MountWithContext(ctx, "secret", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
			return vaultInfo{}, fmt.Errorf("mount kv v2: %w", err)
		}
	}
	if _, ok := mounts["transit/"]; !ok {
		if err := vc.Sys().MountWithContext(ctx, "transit", &vault.MountInput{Type: "transit"}); err != nil {
			return vaultInfo{}, fmt.Errorf("mount transit: %w", err)
		}
	}
	// KV v2 upgrades its storage right after mounting; wait until it accepts reads.
	for {
		_, err := vc.KVv2("secret").Get(ctx, "bulwark/allinone/ready")
		if err == nil || errors.Is(err, vault.ErrSecretNotFound) {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(err.Error(), "upgrad") {
			return vaultInfo{}, fmt.Errorf("vault kv not ready: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.WarnContext(ctx, "DEV ONLY: running the project's Vault as a child process with its unseal key and root token stored beside its data; set VAULT_ADDR for real use",
		"addr", "http://"+addr, "dir", dir, "first_start", first)
	return vaultInfo{Client: vc, Addr: "http://" + addr, Token: in.RootToken, Kind: "dev-server"}, nil
}
