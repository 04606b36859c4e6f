package platform

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProfilingServesOnLoopbackOnly(t *testing.T) {
	log := NewLoggerTo(io.Discard, "text", "error")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	addr, err := startProfiling(ctx, ProfilingConfig{}, log)
	if err != nil || addr != "" {
		t.Fatalf("profiling off by default: addr %q err %v", addr, err)
	}
	for _, bad := range []string{"0.0.0.0:6060", ":6060", "10.1.2.3:6060", "example.com:6060", "127.0.0.1"} {
		if _, err := startProfiling(ctx, ProfilingConfig{Addr: bad}, log); !errors.Is(err, ErrProfilingConfig) {
			t.Errorf("%q: want ErrProfilingConfig, got %v", bad, err)
		}
	}

	addr, err = startProfiling(ctx, ProfilingConfig{Addr: "127.0.0.1:0"}, log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "TestProfilingServesOnLoopbackOnly") {
		t.Fatalf("goroutine profile: status %d, body without this test's goroutine:\n%.300s", resp.StatusCode, body)
	}

	cancel()
	// The listener closes with ctx; the next request cannot be served.
	for range 50 {
		if _, err = http.Get("http://" + addr + "/debug/pprof/"); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("profiling still served after its context ended")
}
