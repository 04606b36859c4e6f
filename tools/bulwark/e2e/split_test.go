package e2e_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/devvault"
	"github.com/bulwarkhq/bulwark/tools/devstack/stack"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// daemon is a private dependency process (redis-server, nats-server) that a
// test stops and starts again on the same port and data.
type daemon struct {
	name string
	bin  string
	args []string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func freePort(t *testing.T) int {
	t.Helper()
	return platformtest.FreePort(t)
}

func startDaemon(t *testing.T, d *daemon) {
	t.Helper()
	lf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = lf, lf
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.name, err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); lf.Close(); close(d.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", d.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s", d.name, d.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// privateRedis is a redis-server of this test's own (never the shared 6379).
func privateRedis(t *testing.T) *daemon {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test needs redis-server on PATH: %v", err)
	}
	port := freePort(t)
	dir := t.TempDir()
	d := &daemon{name: "redis", bin: bin, addr: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, "redis.log"),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}}
	startDaemon(t, d)
	t.Cleanup(d.stop)
	return d
}

// privateNATS is a nats-server of this test's own, JetStream in its own store dir.
func privateNATS(t *testing.T) *daemon {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("this test needs nats-server on PATH: %v", err)
	}
	port := freePort(t)
	dir := t.TempDir()
	d := &daemon{name: "nats", bin: bin, addr: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, "nats.log"),
		args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js"), "--server_name", "e2e"}}
	startDaemon(t, d)
	t.Cleanup(d.stop)
	return d
}

// restartableSim serves the provider simulator on a fixed address that can be
// closed (the provider is down) and opened again.
type restartableSim struct {
	sim  *sim.Sim
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func (r *restartableSim) start(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("simulator listen: %v", err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	r.srv = &http.Server{Handler: r.sim, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	go func(s *http.Server) { _ = s.Serve(ln) }(r.srv)
}

func (r *restartableSim) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

// split is a running split deployment with private dependencies.
type split struct {
	*target
	stack *stack.Stack
	redis *daemon
	nats  *daemon
	sim   *restartableSim
	// vaultDown makes Vault unreachable (true) or reachable again (false), keeping its state.
	vaultDown func(bool) error
}

// switchable answers like a sealed Vault while down.
type switchable struct {
	h    http.Handler
	down atomic.Bool
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"errors":["Vault is sealed"]}`))
		return
	}
	s.h.ServeHTTP(w, r)
}

// startSplit runs every service as its own process (tools/devstack) against a
// private Redis, a private NATS, a real Vault dev server, and a simulator in
// this process (so the test sees what the provider received).
func startSplit(t *testing.T) *split {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rs, ns := privateRedis(t), privateNATS(t)
	rsim := &restartableSim{sim: sim.New(sim.Params{}), addr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	rsim.start(t)
	t.Cleanup(rsim.stop)
	var vaultDown func(bool) error
	p := stack.Params{Root: root, DataDir: t.TempDir(), RedisAddr: rs.addr, NATSURL: "nats://" + ns.addr,
		SimulatorURL: "http://" + rsim.addr,
		Env: map[string]string{
			// a recovered provider is tried again soon, so the test need not wait 30 s.
			"BULWARK_ROUTER_BREAKER_OPEN_FOR": "500ms",
			// provider keys stay cached through the Vault outage whatever the timing; a
			// paused Vault accepts connections and answers nothing, so a refresh would
			// wait for the pause rather than fall back to the cached key at once.
			"BULWARK_ROUTER_KEY_TTL": "10m",
		}}
	if os.Getenv("BULWARK_E2E_DEV_SECRETS") == "1" {
		// developer shortcut before `make vault`: the dev secret file behind Vault's API.
		token := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		dv, err := devvault.Open(filepath.Join(t.TempDir(), "secrets.json"), token)
		if err != nil {
			t.Fatal(err)
		}
		sw := &switchable{h: dv}
		vaultDown = func(down bool) error { sw.down.Store(down); return nil }
		p.VaultAddr, p.VaultToken = platformtest.Serve(t, sw), token
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("a service did not exit cleanly: %v", err)
		}
	})
	if vaultDown == nil {
		vaultDown = func(down bool) error {
			if down {
				return st.PauseVault()
			}
			return st.ResumeVault()
		}
	}
	return &split{vaultDown: vaultDown, target: &target{URL: st.URL("gateway"), IdentityURL: st.URL("identity"), AuditURL: st.URL("audit"), AdminKey: st.AdminKey, Sim: rsim.sim, HC: &http.Client{Timeout: 30 * time.Second}},
		stack: st, redis: rs, nats: ns, sim: rsim}
}

// TestSplit_OfficialSDKs_RedactRestoreDenyAndAuditEveryCall runs the same
// checks as the all-in-one test against separate processes.
func TestSplit_OfficialSDKs_RedactRestoreDenyAndAuditEveryCall(t *testing.T) {
	sp := startSplit(t)
	k := sp.setup(t)
	t.Run("Allowed", func(t *testing.T) { sp.runAllowedCalls(t, k) })
	t.Run("Denied", func(t *testing.T) { sp.runDeniedCalls(t, k) })
	t.Run("NPMOpenAI", func(t *testing.T) { sp.runNPM(t, k) })
	t.Run("Audit", sp.checkAudit)
}
