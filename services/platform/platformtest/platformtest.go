// Package platformtest hands tests the real servers Bulwark runs on: Redis,
// NATS with JetStream and a Vault dev server, each isolated per test. A server
// that cannot be reached fails the test; nothing is ever skipped, so a green
// run always means the integration really ran.
package platformtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
)

// RandomID returns n random bytes as hex, for unique names.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Redis returns a client for the real Redis (BULWARK_TEST_REDIS_ADDR, default
// 127.0.0.1:6379) and a key prefix unique to this test. Keys under the prefix
// are deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	addr := os.Getenv("BULWARK_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: addr, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("this test needs a real Redis at %s (start it with `make deps`): %v", addr, err)
	}
	c := u.(*redis.Client) // one address, no cluster, no sentinel
	prefix := fmt.Sprintf("test:%s:%s:", unsafeChars.ReplaceAllString(t.Name(), "_"), RandomID(4))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = platform.DeleteKeys(ctx, c, prefix)
		_ = c.Close()
	})
	return c, prefix
}

// NATSServer starts a real NATS server with JetStream in this process, on a
// free loopback port, with its store in a temporary directory. It is shut
// down when the test ends.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()
	srv, err := platform.StartEmbeddedNATS(platform.EmbeddedNATSParams{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// NATS starts a NATSServer and returns a connection to it with its JetStream
// context; both are closed when the test ends.
func NATS(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := NATSServer(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("open jetstream: %v", err)
	}
	return nc, js
}

// VaultServer is a running Vault dev server.
type VaultServer struct {
	// Addr is the server's URL.
	Addr string
	// Token is the root token.
	Token string
	// Client is logged in with the root token.
	Client *vault.Client
}

// VaultBinary finds the Vault binary: BULWARK_VAULT_BIN, else bin/vault at the
// repository root (built by `make vault`), else vault on PATH.
func VaultBinary() (string, error) {
	if p := os.Getenv("BULWARK_VAULT_BIN"); p != "" {
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "vault")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("vault"); err == nil {
		return p, nil
	}
	return "", errors.New("no vault binary: run `make vault` (builds bin/vault) or set BULWARK_VAULT_BIN")
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Vault starts a real Vault dev server (KV v2 at secret/, transit at transit/,
// AppRole at approle/) on its own port, and stops it when the test ends.
func Vault(t testing.TB) *VaultServer {
	t.Helper()
	bin, err := VaultBinary()
	if err != nil {
		t.Fatalf("this test needs a real Vault: %v", err)
	}
	token := "root-" + RandomID(8)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		vs, err := startVault(t, bin, addr, token)
		if err == nil {
			return vs
		}
		lastErr = err
	}
	t.Fatalf("start vault dev server: %v", lastErr)
	return nil
}

func startVault(t testing.TB, bin, addr, token string) (*VaultServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", "-dev",
		"-dev-listen-address="+addr, "-dev-root-token-id="+token, "-dev-no-store-token")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "VAULT_LOG_LEVEL=warn")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() { cancel(); <-done }
	cfg := vault.DefaultConfig()
	cfg.Address = "http://" + addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		stop()
		return nil, err
	}
	c.SetToken(token)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Sys().Health()
		if err == nil && h.Initialized && !h.Sealed {
			break
		}
		select {
		case <-done:
			return nil, fmt.Errorf("vault exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("vault at %s not ready after 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		stop()
		return nil, fmt.Errorf("mount transit: %w", err)
	}
	if err := c.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		stop()
		return nil, fmt.Errorf("enable approle: %w", err)
	}
	t.Cleanup(stop)
	return &VaultServer{Addr: cfg.Address, Token: token, Client: c}, nil
}

// Serve runs handler on a real loopback HTTP server that speaks HTTP/1.1 and
// h2c, like a Bulwark service, and returns its base URL.
func Serve(t testing.TB, handler http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}
