package manifests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const (
	repoRoot   = "../.."
	overlayDir = repoRoot + "/deploy/kustomize/overlays"
	// namespace Bulwark runs in, and the one that holds NATS, Redis and Vault.
	appNS  = "bulwark"
	dataNS = "bulwark-data"
)

// services are the Deployments the architecture table names.
var services = []string{"gateway", "identity", "ratelimit", "redaction", "router", "audit"}

func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(overlayDir)
	if err != nil {
		t.Fatalf("read overlays: %v", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if !slices.Contains(out, "dev") || !slices.Contains(out, "prod") {
		t.Fatalf("overlays %v: want at least dev and prod", out)
	}
	return out
}

var renderCache = map[string]*Set{}

func render(t *testing.T, overlay string) *Set {
	t.Helper()
	if s, ok := renderCache[overlay]; ok {
		return s
	}
	s, err := Render(filepath.Join(overlayDir, overlay))
	if err != nil {
		t.Fatalf("render %s: %v", overlay, err)
	}
	renderCache[overlay] = s
	return s
}

func deployment(t *testing.T, s *Set, name string) appsv1.Deployment {
	t.Helper()
	for _, d := range s.Deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no deployment %s", name)
	return appsv1.Deployment{}
}

func TestOverlays_RenderAndDecodeStrictly(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) {
			s := render(t, o)
			var got []string
			for _, d := range s.Deployments {
				got = append(got, d.Name)
			}
			sort.Strings(got)
			want := slices.Clone(services)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("deployments %v, want %v", got, want)
			}
			for _, d := range s.Deployments {
				if d.Namespace != appNS {
					t.Errorf("deployment %s in namespace %q, want %q", d.Name, d.Namespace, appNS)
				}
			}
		})
	}
}

func TestRender_RejectsUnknownField(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "resources: [sa.yaml]\n")
	write("sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\nautomountServiceAcountToken: false\n")
	_, err := Render(dir)
	if err == nil || !strings.Contains(err.Error(), "automountServiceAcountToken") {
		t.Fatalf("misspelt field: got %v, want a strict decoding error naming it", err)
	}
	write("sa.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: c\n    image: i:1\n    resources:\n      limits:\n        cpu: lots\n")
	if _, err = Render(dir); err == nil {
		t.Fatal("malformed quantity decoded without error")
	}
	write("sa.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: x\n")
	if _, err = Render(dir); err == nil {
		t.Fatal("unknown kind decoded without error")
	}
}

func TestOverlays_FollowDeploymentRules(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) {
			for _, err := range CheckSet(render(t, o)) {
				t.Error(err)
			}
		})
	}
}

func TestProd_RunsThreeSpreadReplicasOfStatelessServices(t *testing.T) {
	s := render(t, "prod")
	for _, err := range CheckProd(s) {
		t.Error(err)
	}
	stateless := 0
	for _, d := range s.Deployments {
		if !IsSingleton(d) {
			stateless++
		}
	}
	if stateless != len(services)-1 {
		t.Errorf("%d stateless deployments, want every service but audit (%d)", stateless, len(services)-1)
	}
}

func TestDev_FailsProdRules(t *testing.T) {
	// The prod checks must have teeth: dev runs one replica per service.
	if errs := CheckProd(render(t, "dev")); len(errs) == 0 {
		t.Fatal("dev passes the prod rules; CheckProd checks nothing")
	}
}

func TestCheckDeployment_CatchesEachBrokenRule(t *testing.T) {
	good := deployment(t, render(t, "prod"), "redaction")
	if errs := CheckDeployment(good); len(errs) != 0 {
		t.Fatalf("good deployment: %v", errs)
	}
	f := false
	tr := true
	zero := int64(0)
	cases := map[string]func(d *appsv1.Deployment){
		"no readiness probe":  func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].ReadinessProbe = nil },
		"http liveness probe": func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].LivenessProbe.GRPC = nil },
		"no memory limit": func(d *appsv1.Deployment) {
			delete(d.Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		},
		"no cpu request": func(d *appsv1.Deployment) {
			delete(d.Spec.Template.Spec.Containers[0].Resources.Requests, corev1.ResourceCPU)
		},
		"writable root fs": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f
		},
		"privilege escalation": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &tr
		},
		"root user": func(d *appsv1.Deployment) { d.Spec.Template.Spec.SecurityContext.RunAsUser = &zero },
		"may run as root": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil
			d.Spec.Template.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
		},
		"keeps capabilities": func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil },
		"latest image":       func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "ghcr.io/x/y:latest" },
		"untagged image":     func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "localhost:5000/x/y" },
		"default SA":         func(d *appsv1.Deployment) { d.Spec.Template.Spec.ServiceAccountName = "" },
		"short grace period": func(d *appsv1.Deployment) {
			g := int64(DrainSeconds)
			d.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		},
		"probe on another port": func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].ReadinessProbe.GRPC.Port = 9999 },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			d := *good.DeepCopy()
			breakIt(&d)
			if errs := CheckDeployment(d); len(errs) == 0 {
				t.Fatalf("%s passed the rules", name)
			}
		})
	}
}

func TestCheckSet_RequiresCompanionsOfEveryDeployment(t *testing.T) {
	cases := map[string]func(s *Set){
		"no HPA":            func(s *Set) { s.HPAs = s.HPAs[1:] },
		"no PDB":            func(s *Set) { s.PDBs = s.PDBs[1:] },
		"no ServiceAccount": func(s *Set) { s.ServiceAccounts = s.ServiceAccounts[1:] },
		"no Service":        func(s *Set) { s.Services = s.Services[1:] },
		"only default-deny": func(s *Set) {
			s.NetworkPolicies = slices.DeleteFunc(slices.Clone(s.NetworkPolicies), func(p networkPolicy) bool { return p.Name == "gateway" })
		},
		"no default-deny": func(s *Set) {
			s.NetworkPolicies = slices.DeleteFunc(slices.Clone(s.NetworkPolicies), func(p networkPolicy) bool { return p.Name == "default-deny-all" })
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			s := *render(t, "dev")
			breakIt(&s)
			if errs := CheckSet(&s); len(errs) == 0 {
				t.Fatalf("%s passed the rules", name)
			}
		})
	}
}

// --- the NetworkPolicy graph ---

func pod(name, ns string, l map[string]string) Endpoint {
	return Endpoint{Name: name, Namespace: ns, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": ns}, PodLabels: l}
}

// graph computes every allowed edge between Bulwark's pods, its dependencies,
// and a few stand-ins for the rest of the world.
func graph(t *testing.T, s *Set) []string {
	t.Helper()
	var sources []Endpoint
	var targets []Target
	nsLabels := map[string]string{"kubernetes.io/metadata.name": appNS}
	for _, n := range s.Namespaces {
		if n.Name == appNS {
			for k, v := range n.Labels {
				nsLabels[k] = v
			}
		}
	}
	for _, d := range s.Deployments {
		e := Endpoint{Name: ServiceName(d), Namespace: d.Namespace, NamespaceLabels: nsLabels, PodLabels: d.Spec.Template.Labels}
		sources = append(sources, e)
		targets = append(targets, Target{Endpoint: e, Port: 8080})
	}
	sources = append(sources,
		pod("prometheus", "monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"}),
		pod("client", "default", map[string]string{"app": "some-team-app"}),
		pod("ingress", "ingress-nginx", map[string]string{"app.kubernetes.io/name": "ingress-nginx"}),
		pod("nats", dataNS, map[string]string{"app.kubernetes.io/name": "nats"}),
	)
	targets = append(targets,
		Target{Endpoint: pod("nats", dataNS, map[string]string{"app.kubernetes.io/name": "nats"}), Port: 4222},
		Target{Endpoint: pod("redis", dataNS, map[string]string{"app.kubernetes.io/name": "redis"}), Port: 6379},
		Target{Endpoint: pod("redis-sentinel", dataNS, map[string]string{"app.kubernetes.io/name": "redis"}), Port: 26379},
		Target{Endpoint: pod("vault", dataNS, map[string]string{"app.kubernetes.io/name": "vault"}), Port: 8200},
		Target{Endpoint: pod("dns", "kube-system", map[string]string{"k8s-app": "kube-dns"}), Port: 53, Protocol: corev1.ProtocolUDP},
		Target{Endpoint: pod("kube-apiserver", "default", map[string]string{"component": "apiserver"}), Port: 443},
		Target{Endpoint: Endpoint{Name: "internet", IP: "203.0.113.7"}, Port: 443},
		Target{Endpoint: Endpoint{Name: "internet:80", IP: "203.0.113.7"}, Port: 80},
		Target{Endpoint: Endpoint{Name: "internet-v6", IP: "2001:db8::7"}, Port: 443},
		Target{Endpoint: Endpoint{Name: "cloud-metadata", IP: "169.254.169.254"}, Port: 443},
		Target{Endpoint: Endpoint{Name: "private-net", IP: "10.20.30.40"}, Port: 443},
	)
	var edges []string
	for _, src := range sources {
		for _, dst := range targets {
			if src.Name == dst.Name || (src.Namespace != appNS && dst.Namespace != appNS) {
				continue // only edges with a Bulwark pod at one end are governed here
			}
			ok, err := Allowed(s.NetworkPolicies, src, dst)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				edges = append(edges, src.Name+" -> "+dst.Name)
			}
		}
	}
	sort.Strings(edges)
	return edges
}

// expectedEdges is the architecture table (shared/design/ARCHITECTURE.md) as
// connections: who calls whom, who uses NATS, Redis and Vault, the router's
// provider egress, DNS for every pod that connects anywhere, and Prometheus
// scraping every service. Redaction calls only identity (and DNS to find it).
var expectedEdges = func() []string {
	e := []string{
		"gateway -> identity", "gateway -> ratelimit", "gateway -> redaction", "gateway -> router",
		"gateway -> nats", "gateway -> vault", "gateway -> dns",
		"identity -> nats", "identity -> vault", "identity -> dns",
		"ratelimit -> redis", "ratelimit -> redis-sentinel", "ratelimit -> nats", "ratelimit -> dns", "ratelimit -> identity",
		"router -> vault", "router -> nats", "router -> internet", "router -> internet-v6", "router -> dns", "router -> identity",
		"audit -> nats", "audit -> vault", "audit -> dns", "audit -> identity",
		// Every service but the gateway authorizes its callers with identity.
		"redaction -> identity", "redaction -> dns",
		// The gateway is the front door: any pod in the cluster may call it
		// (Bulwark's own pods may not: their egress does not include it).
		"client -> gateway", "ingress -> gateway", "nats -> gateway",
	}
	for _, s := range services {
		e = append(e, "prometheus -> "+s)
	}
	sort.Strings(e)
	return e
}()

func TestNetworkPolicies_AllowExactlyTheArchitecturesCalls(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o, func(t *testing.T) {
			got := graph(t, render(t, o))
			if missing, extra := diff(expectedEdges, got); len(missing)+len(extra) > 0 {
				t.Errorf("network policy graph differs from the architecture\nmissing (needed, blocked): %v\nextra (allowed, not in the table): %v", missing, extra)
			}
		})
	}
}

func TestGraph_DetectsAWidenedPolicy(t *testing.T) {
	s := *render(t, "dev")
	s.NetworkPolicies = slices.Clone(s.NetworkPolicies)
	for i, p := range s.NetworkPolicies {
		if p.Name == "redaction" {
			p = *p.DeepCopy()
			p.Spec.Egress = append(p.Spec.Egress, networkPolicyEgressAll())
			s.NetworkPolicies[i] = p
		}
	}
	_, extra := diff(expectedEdges, graph(t, &s))
	if !slices.Contains(extra, "redaction -> internet") || !slices.Contains(extra, "redaction -> vault") {
		t.Fatalf("egress-to-anywhere on redaction not reported; extra edges: %v", extra)
	}
}

func diff(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

// --- environment variables against the code ---

func TestManifestEnv_MatchesWhatServicesRead(t *testing.T) {
	servicesDir := filepath.Join(repoRoot, "services")
	known := map[string]map[string]EnvVar{}
	for _, svc := range services {
		vars, err := ServiceEnv(servicesDir, svc)
		if errors.Is(err, ErrNoConfig) {
			// The service is still being written; its variables are checked
			// from the moment its Config exists.
			t.Logf("services/%s has no env-tagged Config yet: its manifest variables are not checked", svc)
			continue
		}
		if err != nil {
			t.Fatalf("parse services/%s: %v", svc, err)
		}
		known[svc] = vars
	}
	if len(known) == 0 {
		t.Fatal("no service declares a Config; the parser or the paths are wrong")
	}
	for _, o := range overlays(t) {
		for _, d := range render(t, o).Deployments {
			svc := ServiceName(d)
			vars, ok := known[svc]
			if !ok {
				continue
			}
			t.Run(o+"/"+svc, func(t *testing.T) {
				for _, err := range CheckEnv(d, vars) {
					t.Error(err)
				}
			})
		}
	}
}

func TestCheckEnv_ReportsUnknownAndMissingSettings(t *testing.T) {
	vars, err := ServiceEnv(filepath.Join(repoRoot, "services"), "audit")
	if err != nil {
		t.Fatal(err)
	}
	orig := deployment(t, render(t, "prod"), "audit")
	d := *orig.DeepCopy()
	if errs := CheckEnv(d, vars); len(errs) != 0 {
		t.Fatalf("the real manifest: %v", errs)
	}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "BULWARK_AUDIT_RETENTON", Value: "9600h"})
	if errs := CheckEnv(d, vars); len(errs) != 1 || !strings.Contains(errs[0].Error(), "BULWARK_AUDIT_RETENTON") {
		t.Fatalf("a misspelt setting: %v", errs)
	}
	vars["BULWARK_AUDIT_SOMETHING_REQUIRED"] = EnvVar{Name: "BULWARK_AUDIT_SOMETHING_REQUIRED", Required: true, Field: "audit.Config.X"}
	if errs := CheckEnv(d, vars); len(errs) != 2 {
		t.Fatalf("a required setting left unset: %v", errs)
	}
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}}
	if errs := CheckEnv(d, vars); len(errs) != 3 {
		t.Fatalf("envFrom hides variables from the check: %v", errs)
	}
}

func names(vars map[string]EnvVar) string {
	var out []string
	for n := range vars {
		out = append(out, n)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func TestServiceEnv_FollowsNestedPrefixesIntoThePlatformKit(t *testing.T) {
	dir := t.TempDir()
	mk := func(rel, body string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("platform/go.mod", "module example.com/platform\n")
	mk("platform/clients.go", "package platform\nimport \"time\"\ntype NATSConfig struct {\n\tURL string `env:\"URL\" default:\"nats://x\"`\n\tTimeout time.Duration `env:\"TIMEOUT\"`\n}\n")
	mk("demo/go.mod", "module example.com/demo\n")
	mk("demo/internal/config/config.go", "package config\nimport (\n\tp \"example.com/platform\"\n\t\"time\"\n)\n"+
		"type Config struct {\n\tAddr string `env:\"ADDR\"`\n\tKey string `env:\"KEY\" required:\"true\"`\n\tWait time.Duration `env:\"WAIT\" default:\"1s\"`\n\tBus p.NATSConfig `env:\"NATS_\"`\n\tUp Upstream `env:\"UP_\"`\n\tignored string `env:\"NOPE\"`\n}\n"+
		"type Upstream struct {\n\tURL string `env:\"URL\" required:\"true\" default:\"http://x\"`\n}\n")
	mk("demo/internal/config/config_test.go", "package config\ntype T struct{ X string `env:\"TEST_ONLY\"` }\n")
	vars, err := ServiceEnv(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"BULWARK_DEMO_ADDR", "BULWARK_DEMO_KEY", "BULWARK_DEMO_NATS_TIMEOUT", "BULWARK_DEMO_NATS_URL", "BULWARK_DEMO_UP_URL", "BULWARK_DEMO_WAIT"}
	if got := strings.Split(names(vars), ", "); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !vars["BULWARK_DEMO_KEY"].Required || vars["BULWARK_DEMO_UP_URL"].Required || vars["BULWARK_DEMO_ADDR"].Required {
		t.Fatalf("required flags wrong: %+v", vars)
	}
	mk("empty/go.mod", "module example.com/empty\n")
	mk("empty/main.go", "package main\nfunc main() {}\n")
	if _, err := ServiceEnv(dir, "empty"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("module without config: got %v, want ErrNoConfig", err)
	}
}

func TestAuditEnv_AgreesWithTheStreamSettings(t *testing.T) {
	// The audit service creates its stream from BULWARK_AUDIT_RETENTION and
	// _REPLICAS; the stream file in deploy/deps documents the same stream.
	st := readStreamConfig(t)
	for _, o := range overlays(t) {
		d := deployment(t, render(t, o), "audit")
		env := map[string]string{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if got, want := env["BULWARK_AUDIT_RETENTION"], st.MaxAge.String(); got == "" || mustDuration(t, got) != st.MaxAge {
			t.Errorf("%s: BULWARK_AUDIT_RETENTION %q, the stream's max_age is %s", o, got, want)
		}
		if o == "prod" && env["BULWARK_AUDIT_REPLICAS"] != fmt.Sprint(st.Replicas) {
			t.Errorf("prod: BULWARK_AUDIT_REPLICAS %q, the stream has %d replicas", env["BULWARK_AUDIT_REPLICAS"], st.Replicas)
		}
	}
}

func TestGateway_GracePeriodCoversRequestAndAuditDrains(t *testing.T) {
	for _, o := range overlays(t) {
		d := deployment(t, render(t, o), "gateway")
		var timeout string
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "BULWARK_GATEWAY_SHUTDOWN_TIMEOUT" {
				timeout = e.Value
			}
		}
		if timeout == "" {
			t.Fatalf("%s: BULWARK_GATEWAY_SHUTDOWN_TIMEOUT not set; the grace period must be computed from it", o)
		}
		drain, err := Drain(d)
		if err != nil {
			t.Fatal(err)
		}
		// cmd/gateway drains the server, then the audit records and spool, each for SHUTDOWN_TIMEOUT.
		if want := int64(2 * mustDuration(t, timeout).Seconds()); drain < want {
			t.Errorf("%s: drain annotation %ds, the gateway may take %ds", o, drain, want)
		}
	}
}
