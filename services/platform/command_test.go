package platform

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

type commandTestConfig struct {
	Logging `env:""`
	Mode    string `env:"MODE" required:"true"`
}

func (c commandTestConfig) Validate() error {
	if c.Mode == "invalid" {
		return errors.New("MODE invalid is not a mode")
	}
	return nil
}

// TestMain runs Command in a child process of the test binary when asked,
// since Command ends the process with its exit status.
func TestMain(m *testing.M) {
	if os.Getenv("BULWARK_COMMAND_TEST_CHILD") == "1" {
		Command("commandtest", ConfigFrom[commandTestConfig]("BULWARK_COMMANDTEST_"), func(ctx context.Context, p Process, cfg commandTestConfig) error {
			if p.Log == nil || p.Registry == nil || p.Interceptors.Metrics == nil {
				return errors.New("process not set up")
			}
			switch cfg.Mode {
			case "fail":
				return errors.New("run failed")
			case "cancelled":
				return context.Canceled // not a signal: a failure
			}
			os.Stdout.WriteString("ready\n")
			<-ctx.Done()
			return ctx.Err() // stopped by a signal: a clean exit
		})
		return
	}
	os.Exit(m.Run())
}

func TestCommand_ExitStatusSaysWhatEnded(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		signal bool
		want   int
		stderr string
	}{
		{mode: "", want: 2, stderr: "BULWARK_COMMANDTEST_MODE is required"},
		{mode: "invalid", want: 2, stderr: "MODE invalid is not a mode"},
		{mode: "fail", want: 1, stderr: "run failed"},
		{mode: "cancelled", want: 1, stderr: "context canceled"},
		{mode: "serve", signal: true, want: 0},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BULWARK_COMMAND_TEST_CHILD=1", "BULWARK_COMMANDTEST_LOG_FORMAT=text")
		if tc.mode != "" {
			cmd.Env = append(cmd.Env, "BULWARK_COMMANDTEST_MODE="+tc.mode)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if tc.signal {
			buf := make([]byte, 6)
			if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
				t.Fatalf("%s: child not ready: %q %v", tc.mode, buf, err)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s: the command did not end", tc.mode)
		}
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.mode, code, stderr.String(), tc.want, tc.stderr)
		}
	}
}
