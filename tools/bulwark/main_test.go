package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// buildBinary compiles this command once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bulwark")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type running struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan error
}

// stdout is what the process printed so far.
func (r *running) stdout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// serveBinary starts `bulwark` with env and waits for its banner.
func serveBinary(t *testing.T, bin string, env []string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(bin), lines: make(chan string, 100), done: make(chan error, 1)}
	r.cmd.Env = append(os.Environ(), env...)
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "bulwark.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
		r.done <- r.cmd.Wait()
		logs.Close()
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
		}
	})
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l := <-r.lines:
			if strings.HasPrefix(l, "Bulwark is running at") {
				// the rest of the banner follows at once
				time.Sleep(200 * time.Millisecond)
				return r
			}
		case err := <-r.done:
			b, _ := os.ReadFile(logs.Name())
			t.Fatalf("bulwark exited before serving: %v\n%s", err, b)
		case <-deadline:
			t.Fatal("no banner after 2 minutes")
		}
	}
}

// stop sends SIGTERM and expects a clean exit (drained).
func (r *running) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("bulwark did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("bulwark still running 45s after SIGTERM")
	}
}

var adminKeyLine = regexp.MustCompile(`(?m)^\s+(bk_dev_[0-9a-z]+_[A-Za-z0-9]+)\s*$`)

// TestBinary_FirstStartPrintsAdminKey_DemoVerifies_RestartKeepsState is `make
// run` then `make demo` from a clean data directory: the first start prints a
// one-time admin key, the demo's tour ends with a verified inclusion proof and
// the provider never saw the PII, SIGTERM drains and exits 0, and a second
// start on the same data directory keeps the admin (the key still works) and
// prints no new key.
func TestBinary_FirstStartPrintsAdminKey_DemoVerifies_RestartKeepsState(t *testing.T) {
	bin := buildBinary(t)
	_, prefix := platformtest.Redis(t)
	port := platformtest.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	env := []string{"BULWARK_ADDR=127.0.0.1:" + strconv.Itoa(port), "BULWARK_DATA_DIR=" + t.TempDir(),
		"BULWARK_RATELIMIT_KEY_PREFIX=" + prefix, "VAULT_ADDR=", "VAULT_TOKEN=", "BULWARK_BOOTSTRAP_ADMIN_KEY="}
	if os.Getenv("BULWARK_E2E_DEV_SECRETS") == "1" {
		env = append(env, "BULWARK_VAULT_BIN=none") // developer shortcut before `make vault`
	} else {
		vb, err := platformtest.VaultBinary()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, "BULWARK_VAULT_BIN="+vb) // the project's Vault as a child, with file storage
	}

	first := serveBinary(t, bin, env)
	m := adminKeyLine.FindStringSubmatch(first.stdout())
	if m == nil {
		t.Fatalf("no admin key in the banner:\n%s", first.stdout())
	}
	adminKey := m[1]
	demo := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "demo")
		cmd.Env = append(os.Environ(), "BULWARK_URL="+url, "BULWARK_ADMIN_KEY="+adminKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bulwark demo: %v\n%s", err, out)
		}
		return string(out)
	}
	out := demo()
	if !strings.Contains(out, "VERIFIED") {
		t.Errorf("the tour did not verify the inclusion proof:\n%s", out)
	}
	provider := section(out, "3. What the provider received", "4. What the client got back")
	client := section(out, "4. What the client got back", "5. The audit record")
	for _, pii := range []string{"jane.doe@example.com", "536-90-4399", "(415) 555-0132"} {
		if strings.Contains(provider, pii) {
			t.Errorf("the provider received %q:\n%s", pii, provider)
		}
		if !strings.Contains(client, pii) {
			t.Errorf("the client's answer lacks %q:\n%s", pii, client)
		}
	}
	first.stop(t)

	second := serveBinary(t, bin, env)
	if adminKeyLine.MatchString(second.stdout()) || !strings.Contains(second.stdout(), "already created") {
		t.Errorf("second start banner:\n%s", second.stdout())
	}
	if out := demo(); !strings.Contains(out, "VERIFIED") {
		t.Errorf("the tour after a restart:\n%s", out)
	}
	second.stop(t)
}

func section(s, from, to string) string {
	i := strings.Index(s, from)
	j := strings.Index(s, to)
	if i < 0 || j < i {
		return ""
	}
	return s[i:j]
}
