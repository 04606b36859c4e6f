package stack_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/bulwarkhq/bulwark/tools/devstack/stack"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func start(t *testing.T, specs []stack.Spec) *stack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Params{Root: repoRoot(t), DataDir: t.TempDir(), Specs: specs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServiceBinaries_ServeHealthReflectionMetricsAndExitCleanlyOnSIGTERM runs
// each service's real binary as its own process, as a split deployment does.
func TestServiceBinaries_ServeHealthReflectionMetricsAndExitCleanlyOnSIGTERM(t *testing.T) {
	specs := stack.Services()
	s := start(t, specs)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop()
		}
	})
	probe := filepath.Join(repoRoot(t), "bin", "grpc-health-probe")
	if _, err := os.Stat(probe); err != nil {
		t.Fatalf("grpc-health-probe missing (run `make tools`): %v", err)
	}
	for _, spec := range specs {
		p := s.Procs[spec.Name]
		t.Run(spec.Name, func(t *testing.T) {
			for _, svc := range spec.ServiceNames {
				out, err := exec.Command(probe, "-addr", p.Addr, "-service", svc).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "SERVING") {
					t.Errorf("grpc-health-probe %s: %v: %s", svc, err, out)
				}
			}
			listed := reflectionServices(t, p.Addr)
			for _, svc := range spec.ServiceNames {
				if !strings.Contains(listed, svc) {
					t.Errorf("reflection lists %s, missing %s", listed, svc)
				}
			}
			res, err := http.Get(p.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
				t.Errorf("/metrics: %d", res.StatusCode)
			}
		})
	}
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatalf("not every service exited 0 on SIGTERM: %v", err)
	}
}

func reflectionServices(t *testing.T, addr string) string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return strings.Join(names, ",")
}

// TestGeneratedClients_TypeScriptAndPythonCallARunningService drives the
// generated TypeScript (node) and Python (grpcio) clients against the real
// redaction binary.
func TestGeneratedClients_TypeScriptAndPythonCallARunningService(t *testing.T) {
	s := start(t, stack.Only("redaction"))
	t.Cleanup(func() { _ = s.Stop() })
	p := s.Procs["redaction"]
	root := repoRoot(t)

	npm := exec.Command("npm", "test", "--silent")
	npm.Dir = filepath.Join(root, "gen", "ts")
	npm.Env = append(os.Environ(), "BULWARK_REDACTION_URL="+p.URL)
	if out, err := npm.CombinedOutput(); err != nil {
		t.Errorf("TypeScript client test failed: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "pass 1") {
		t.Errorf("TypeScript client test ran no test:\n%s", out)
	}

	py := exec.Command("/usr/bin/python3", "-m", "unittest", "-v", "tests/test_client.py")
	py.Dir = filepath.Join(root, "gen", "python")
	py.Env = append(os.Environ(), "BULWARK_REDACTION_ADDR="+p.Addr)
	if out, err := py.CombinedOutput(); err != nil {
		t.Errorf("Python client test failed: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "Ran 1 test") {
		t.Errorf("Python client test ran no test:\n%s", out)
	}
}
