package manifests

// The Grafana dashboard and the Prometheus rules in deploy/observability must
// parse, and every metric they query must be one the services really export
// (found in the services' Go source), so a renamed metric cannot leave a
// silent panel or an alert that never fires.

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const observabilityDir = repoRoot + "/deploy/observability"

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record      string            `json:"record"`
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

var (
	metricLiteral   = regexp.MustCompile(`"(bulwark_[a-z0-9_]+)"`)
	namespacedName  = regexp.MustCompile(`Namespace:\s*"bulwark",\s*Name:\s*"([a-z0-9_]+)"`)
	metricInExpr    = regexp.MustCompile(`\bbulwark_[a-z0-9_]+\b`)
	recordingInExpr = regexp.MustCompile(`\bbulwark:[a-z0-9_:]+\b`)
)

// exportedMetrics scans the services' non-test Go source for metric names.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot+"/services", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricLiteral.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		for _, m := range namespacedName.FindAllSubmatch(b, -1) {
			names["bulwark_"+string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in services/: the scan is broken", len(names))
	}
	return names
}

// baseMetric strips the series suffixes of histograms and summaries.
func baseMetric(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok {
			return b
		}
	}
	return name
}

func checkExpr(t *testing.T, where, expr string, exported, records map[string]bool) {
	t.Helper()
	if strings.TrimSpace(expr) == "" {
		t.Errorf("%s: empty expression", where)
		return
	}
	depth := map[rune]int{}
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			depth[r]++
		case ')', ']', '}':
			depth[pairs[r]]--
			if depth[pairs[r]] < 0 {
				t.Errorf("%s: unbalanced %q in %s", where, r, expr)
				return
			}
		}
	}
	for r, n := range depth {
		if n != 0 {
			t.Errorf("%s: unclosed %q in %s", where, r, expr)
		}
	}
	for _, m := range metricInExpr.FindAllString(expr, -1) {
		if !exported[m] && !exported[baseMetric(m)] {
			t.Errorf("%s: metric %s is not exported by any service", where, m)
		}
	}
	for _, m := range recordingInExpr.FindAllString(expr, -1) {
		if !records[m] {
			t.Errorf("%s: recording rule %s is not defined in alerts.yaml", where, m)
		}
	}
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(observabilityDir + "/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	return rf
}

func TestAlertRules_ParseAndQueryOnlyExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	rf := loadRules(t)
	records := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				records[r.Record] = true
			}
		}
	}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if (r.Record == "") == (r.Alert == "") {
				t.Errorf("group %s: a rule is exactly one of record or alert: %+v", g.Name, r)
			}
			if r.Alert != "" {
				alerts[r.Alert] = true
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("alert %s: needs a severity label and a summary", r.Alert)
				}
			}
			checkExpr(t, g.Name+"/"+r.Record+r.Alert, r.Expr, exported, records)
		}
	}
	// The alerts the issue asks for: anomalies, error budgets, audit lag, checkpoint age, breakers.
	for _, want := range []string{"BulwarkUsageAnomaly", "BulwarkErrorBudgetFastBurn", "BulwarkErrorBudgetSlowBurn",
		"BulwarkAuditIngestLag", "BulwarkAuditCheckpointStale", "BulwarkCircuitBreakerOpen", "BulwarkProviderErrorRate"} {
		if !alerts[want] {
			t.Errorf("alerts.yaml lacks %s", want)
		}
	}
}

func TestGrafanaDashboard_IsValidJSONAndEveryPanelQueriesExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	records := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				records[r.Record] = true
			}
		}
	}
	b, err := os.ReadFile(observabilityDir + "/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int                      `json:"id"`
			Title   string                   `json:"title"`
			Type    string                   `json:"type"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard needs a uid, a title and panels")
	}
	ids := map[int]bool{}
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v", p.Title, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, exported, records)
			for _, m := range metricInExpr.FindAllString(tg.Expr, -1) {
				queried[baseMetric(m)] = true
			}
		}
	}
	// The families the issue names are on the dashboard: RED per RPC and per provider, limits, alerts, audit lag.
	var missing []string
	for _, want := range []string{"bulwark_rpc_requests_total", "bulwark_rpc_duration_seconds", "bulwark_router_provider_requests_total",
		"bulwark_router_provider_duration_seconds", "bulwark_router_breaker_open", "bulwark_ratelimit_decisions_total",
		"bulwark_ratelimit_anomaly_alerts_total", "bulwark_audit_ingest_lag_messages", "bulwark_audit_checkpoint_age_seconds"} {
		if !queried[want] {
			missing = append(missing, want)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("dashboard does not chart %v", missing)
	}
}
