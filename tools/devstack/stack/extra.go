package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Stack) httpClient() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

// Environment is the environment the stack's keys work in.
func (s *Stack) Environment() string { return s.params.Environment }

// SimProviders are the providers of the router's development catalog.
var SimProviders = []string{"openai", "anthropic", "azure"}

// seedProviderKeys stores a simulator key for every catalog provider in the
// stack's environment (KV v2 secret/bulwark/<env>/providers/<provider>), unless
// one is there, so the router can call the simulator exactly as a provider.
func (s *Stack) seedProviderKeys(ctx context.Context) error {
	c, err := s.Vault()
	if err != nil {
		return err
	}
	kv := c.KVv2("secret")
	deadline := time.Now().Add(30 * time.Second)
	for _, prov := range SimProviders {
		path := "bulwark/" + s.params.Environment + "/providers/" + prov
		for {
			_, err = kv.Get(ctx, path)
			if err == nil {
				break
			}
			if errors.Is(err, vault.ErrSecretNotFound) {
				_, err = kv.Put(ctx, path, map[string]any{"api_key": "sim-" + prov + "-" + randomHex(8)}, vault.WithCheckAndSet(0))
				if err == nil {
					break
				}
			}
			// A fresh dev server may still be upgrading its KV mount.
			if time.Now().After(deadline) {
				return fmt.Errorf("seed the %s provider key: %w", prov, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// startSimulator runs tools/provsim as its own process.
func (s *Stack) startSimulator(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	p, err := s.spawn("provsim", filepath.Join(s.params.BinDir, "provsim"), []string{"-addr", addr}, nil)
	if err != nil {
		return err
	}
	p.Addr, p.URL = addr, "http://"+addr
	s.simProc, s.SimulatorURL = p, p.URL
	if err := waitHTTP(ctx, p, p.URL+"/v1/models", 30*time.Second); err != nil {
		return err
	}
	s.params.Logger.Info("started", "service", "provsim", "url", p.URL)
	return nil
}

// waitHTTP waits until url answers at all (any status).
func waitHTTP(ctx context.Context, p *Process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start (%v):\n%s", p.Name, p.waitErr, tail(p.LogPath, 30))
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %s:\n%s", p.Name, timeout, tail(p.LogPath, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops a service at once with SIGKILL (no drain), as a crash would.
func (s *Stack) Kill(name string) error {
	p, ok := s.Procs[name]
	if !ok {
		return fmt.Errorf("no process %q", name)
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return nil
}

// Restart starts a stopped service again on the same address with the same
// environment and waits until it is healthy.
func (s *Stack) Restart(ctx context.Context, name string) error {
	p, ok := s.Procs[name]
	if !ok {
		return fmt.Errorf("no process %q", name)
	}
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	np, err := s.spawn(name, p.bin, p.args, p.env)
	if err != nil {
		return err
	}
	np.Addr, np.URL = p.Addr, p.URL
	s.mu.Lock()
	s.Procs[name] = np
	s.mu.Unlock()
	return waitHealthy(ctx, np, 60*time.Second)
}

// Running reports whether a service's process is alive.
func (s *Stack) Running(name string) bool {
	p, ok := s.Procs[name]
	if !ok {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Log returns the last n lines of a service's log.
func (s *Stack) Log(name string, n int) string {
	if p, ok := s.Procs[name]; ok {
		return tail(p.LogPath, n)
	}
	return ""
}

// StopSimulator stops the provider simulator process (when the stack started it).
func (s *Stack) StopSimulator() error {
	if s.simProc == nil {
		return errors.New("the simulator is not the stack's own process")
	}
	return terminate(s.simProc, 10*time.Second)
}

// StartSimulator starts the simulator process again on the same address.
func (s *Stack) StartSimulator(ctx context.Context) error {
	if s.simProc == nil {
		return errors.New("the simulator is not the stack's own process")
	}
	p := s.simProc
	np, err := s.spawn("provsim", p.bin, p.args, p.env)
	if err != nil {
		return err
	}
	np.Addr, np.URL = p.Addr, p.URL
	s.simProc = np
	return waitHTTP(ctx, np, np.URL+"/v1/models", 30*time.Second)
}

// ErrNoVaultProcess reports a stack whose Vault it did not start.
var ErrNoVaultProcess = errors.New("the stack did not start Vault")

// PauseVault freezes the stack's Vault process (SIGSTOP): it stops answering
// while keeping its in-memory state, as an unreachable Vault would.
func (s *Stack) PauseVault() error {
	if s.vaultProc == nil {
		return ErrNoVaultProcess
	}
	return syscall.Kill(s.vaultProc.cmd.Process.Pid, syscall.SIGSTOP)
}

// ResumeVault lets a paused Vault run again (SIGCONT).
func (s *Stack) ResumeVault() error {
	if s.vaultProc == nil {
		return ErrNoVaultProcess
	}
	return syscall.Kill(s.vaultProc.cmd.Process.Pid, syscall.SIGCONT)
}

// startNATS runs a nats-server of the stack's own with JetStream under DataDir.
func (s *Stack) startNATS(ctx context.Context) error {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		return fmt.Errorf("nats-server not on PATH (apt-get install nats-server, or set BULWARK_NATS_URL): %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, err := s.spawn("nats", bin, []string{"-a", host, "-p", port, "-js", "-sd", filepath.Join(s.params.DataDir, "nats")}, nil)
	if err != nil {
		return err
	}
	p.Addr, p.URL = addr, "nats://"+addr
	s.natsProc, s.params.NATSURL = p, p.URL
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("nats-server exited during start:\n%s", tail(p.LogPath, 20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server not listening after 15s:\n%s", tail(p.LogPath, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.params.Logger.Info("nats-server", "url", p.URL)
	return nil
}
