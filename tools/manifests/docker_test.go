package manifests

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const dockerfile = repoRoot + "/deploy/docker/Dockerfile"

// stages splits a Dockerfile into its build stages (FROM line plus the
// instructions up to the next FROM), with continuation lines joined.
func stages(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var out [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], line)
		}
	}
	return out
}

func TestDockerfile_BuildsAStaticBinaryOnANonRootDistrolessImage(t *testing.T) {
	st := stages(t)
	if len(st) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(st))
	}
	build, final := strings.Join(st[0], "\n"), st[len(st)-1]
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "ARG SERVICE", "./cmd/${SERVICE}"} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	if !regexp.MustCompile(`^FROM (gcr\.io/distroless/static[-\w]*:nonroot|scratch)\b`).MatchString(final[0]) {
		t.Errorf("final stage %q: want distroless/static nonroot or scratch", final[0])
	}
	var user string
	for _, l := range final {
		if u, ok := strings.CutPrefix(l, "USER "); ok {
			user = strings.TrimSpace(u)
		}
		if strings.HasPrefix(l, "RUN ") {
			t.Errorf("final stage runs %q: it has no shell and should only copy the binary", l)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("final stage USER %q: want a numeric non-root uid", user)
	}
	// The Deployments run as the image's user, so runAsNonRoot can verify it.
	for _, o := range overlays(t) {
		for _, d := range render(t, o).Deployments {
			sc := d.Spec.Template.Spec.SecurityContext
			if sc == nil || sc.RunAsUser == nil || strings.TrimSpace(uid) != strconv.FormatInt(*sc.RunAsUser, 10) {
				t.Errorf("%s/%s: runAsUser differs from the image's USER %s", o, d.Name, uid)
			}
		}
	}
}

func TestDockerfile_EveryDeployedServiceHasACommand(t *testing.T) {
	found := 0
	for _, svc := range services {
		dir := filepath.Join(repoRoot, "services", svc, "cmd", svc)
		if _, err := os.Stat(dir); err != nil {
			t.Logf("services/%s/cmd/%s does not exist yet: its image cannot be built", svc, svc)
			continue
		}
		found++
	}
	if found == 0 {
		t.Fatal("no service has a cmd directory; the paths are wrong")
	}
}
