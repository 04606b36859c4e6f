package main

// dataflow draws how customer data moves through the AI stack, from the live
// configuration and recent traffic: each calling team or application → the
// redaction profile its policy applies, with the data classes seen → each
// provider with its region, DPA, retention and SOC 2 report status. Edges
// carry the call (and token) volumes of the last N days of audit records.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/goccy/go-graphviz"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
)

func init() { register(newDataflowCmd) }

func newDataflowCmd() *cobra.Command {
	var format, env, outFile string
	var days int
	cmd := &cobra.Command{
		Use:   "dataflow [--format svg|mermaid|dot] [--days N] [--env ENV] [--out FILE]",
		Short: "Draw the data flow: callers → redaction profile and data classes → providers, with volumes",
		Long: `Draws, from the live policy (identity), routes and provider registry (router) and the last
N days of audit records: each calling team or application, the redaction profile its policy
applies and the data classes seen in its calls, and each provider with its region, DPA,
retention and SOC 2 report status; edges carry call and token volumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			now := time.Now().UTC()
			g, err := collectFlow(ctx, a, env, now.AddDate(0, 0, -days), now)
			if err != nil {
				return err
			}
			w := out(cmd)
			if outFile != "" {
				var buf bytes.Buffer
				if err := g.write(ctx, &buf, format); err != nil {
					return err
				}
				return os.WriteFile(outFile, buf.Bytes(), 0o644)
			}
			return g.write(ctx, w, format)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "svg", "svg, mermaid or dot")
	f.IntVar(&days, "days", 30, "days of audit records to count")
	f.StringVar(&env, "env", "dev", "environment whose policy and provider status to draw")
	f.StringVar(&outFile, "out", "", "write to FILE instead of standard output")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"svg", "mermaid", "dot"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// flowGraph is the diagram's model, independent of the output format.
type flowGraph struct {
	Env      string
	From, To time.Time
	Records  int
	// Callers by id (team id, else principal id), with the applications seen.
	Callers map[string]*flowCaller
	// Profiles by name with the data classes seen and their finding counts.
	Profiles map[string]*flowProfile
	// Providers by name from the registry (and any seen only in records).
	Providers map[string]*flowProvider
	// CallerProfile and ProfileProvider are the edges with their volumes.
	CallerProfile   map[[2]string]*flowVolume
	ProfileProvider map[[2]string]*flowVolume
}

type flowCaller struct {
	ID, Kind string
	Apps     map[string]bool
}

type flowProfile struct {
	Name    string
	Classes map[string]int64
}

type flowProvider struct {
	Name, Region, Retention, ReportStatus string
	DPA, Enabled, Routable                bool
	Models                                map[string]bool
}

type flowVolume struct {
	Calls, Denied, Tokens int64
}

// policyDoc is the part of a policy document the diagram needs.
type policyDoc struct {
	Defaults struct {
		RedactionProfile string `json:"redaction_profile"`
	} `json:"defaults"`
	Providers map[string]struct {
		DPA           bool   `json:"dpa"`
		ZeroRetention bool   `json:"zero_retention"`
		Region        string `json:"region"`
	} `json:"providers"`
	Rules []struct {
		Effect           string   `json:"effect"`
		Roles            []string `json:"roles"`
		Principals       []string `json:"principals"`
		Actions          []string `json:"actions"`
		RedactionProfile string   `json:"redaction_profile"`
	} `json:"rules"`
}

// profileFor is the redaction profile the policy applies to a principal: the
// first allowing LLM rule that names it or one of its roles and sets a
// profile, else the policy default.
func (d *policyDoc) profileFor(principal string, roles []string) string {
	has := func(list []string, v string) bool {
		for _, x := range list {
			if x == v || x == "*" {
				return true
			}
		}
		return false
	}
	for _, r := range d.Rules {
		if r.Effect == "deny" || r.RedactionProfile == "" {
			continue
		}
		llm := len(r.Actions) == 0
		for _, a := range r.Actions {
			llm = llm || strings.HasPrefix(a, "llm.")
		}
		match := len(r.Roles) == 0 && len(r.Principals) == 0
		match = match || has(r.Principals, principal)
		for _, role := range roles {
			match = match || has(r.Roles, role)
		}
		if llm && match {
			return r.RedactionProfile
		}
	}
	if d.Defaults.RedactionProfile != "" {
		return d.Defaults.RedactionProfile
	}
	return "default"
}

func collectFlow(ctx context.Context, a *api, env string, from, to time.Time) (*flowGraph, error) {
	g := &flowGraph{Env: env, From: from, To: to, Callers: map[string]*flowCaller{}, Profiles: map[string]*flowProfile{},
		Providers: map[string]*flowProvider{}, CallerProfile: map[[2]string]*flowVolume{}, ProfileProvider: map[[2]string]*flowVolume{}}

	var doc policyDoc
	pol, err := a.policy.GetPolicy(ctx, connect.NewRequest(&identityv1.GetPolicyRequest{Environment: env}))
	if err != nil {
		return nil, explain("get policy", err)
	}
	if err := yaml.Unmarshal([]byte(pol.Msg.GetPolicy().GetDocument()), &doc); err != nil {
		return nil, fmt.Errorf("parse the %s policy: %w", env, err)
	}
	principals, err := listAllPrincipals(ctx, a)
	if err != nil {
		return nil, err
	}
	provs, err := a.router.ListProviders(ctx, connect.NewRequest(&routerv1.ListProvidersRequest{Environment: env}))
	if err != nil {
		return nil, explain("list providers", err)
	}
	for _, p := range provs.Msg.GetProviders() {
		g.Providers[p.GetName()] = providerNode(p, to)
	}
	for name, facts := range doc.Providers {
		if fp, ok := g.Providers[name]; ok && fp.Region == "" {
			fp.Region = facts.Region
		}
	}
	routes, err := a.router.ListRoutes(ctx, connect.NewRequest(&routerv1.ListRoutesRequest{}))
	if err != nil {
		return nil, explain("list routes", err)
	}
	for _, r := range routes.Msg.GetRoutes() {
		for _, d := range r.GetDeployments() {
			if p, ok := g.Providers[d.GetProvider()]; ok {
				p.Models[r.GetAlias()] = true
			}
		}
	}

	recs, err := queryAll(ctx, a, &auditv1.QueryRequest{StartTime: timestamppb.New(from), EndTime: timestamppb.New(to)}, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		c := r.GetEvent().GetLlmCall()
		if c == nil || (r.GetEvent().GetEnvironment() != "" && r.GetEvent().GetEnvironment() != env) {
			continue
		}
		g.Records++
		callerID, kind := c.GetTeamId(), "team"
		if callerID == "" {
			callerID, kind = c.GetPrincipalId(), "application"
		}
		if callerID == "" {
			callerID, kind = "unauthenticated", "application"
		}
		caller := g.Callers[callerID]
		if caller == nil {
			caller = &flowCaller{ID: callerID, Kind: kind, Apps: map[string]bool{}}
			g.Callers[callerID] = caller
		}
		if c.GetPrincipalId() != "" && c.GetPrincipalId() != callerID {
			caller.Apps[c.GetPrincipalId()] = true
		}
		prof := doc.profileFor(c.GetPrincipalId(), principals[c.GetPrincipalId()])
		pn := g.Profiles[prof]
		if pn == nil {
			pn = &flowProfile{Name: prof, Classes: map[string]int64{}}
			g.Profiles[prof] = pn
		}
		for _, dc := range c.GetDataClasses() {
			pn.Classes[dc] += 0
		}
		for class, n := range c.GetFindings() {
			pn.Classes[class] += int64(n)
		}
		denied := c.GetDecision() != auditv1.Decision_DECISION_ALLOWED
		vol(g.CallerProfile, callerID, prof).add(denied, 0)
		if c.GetProvider() != "" && !denied {
			if g.Providers[c.GetProvider()] == nil {
				g.Providers[c.GetProvider()] = &flowProvider{Name: c.GetProvider(), ReportStatus: "not in registry", Models: map[string]bool{}}
			}
			vol(g.ProfileProvider, prof, c.GetProvider()).add(false, c.GetInputTokens()+c.GetOutputTokens())
		}
	}
	return g, nil
}

func vol(m map[[2]string]*flowVolume, a, b string) *flowVolume {
	k := [2]string{a, b}
	if m[k] == nil {
		m[k] = &flowVolume{}
	}
	return m[k]
}

func (v *flowVolume) add(denied bool, tokens int64) {
	v.Calls++
	if denied {
		v.Denied++
	}
	v.Tokens += tokens
}

func providerNode(p *routerv1.Provider, now time.Time) *flowProvider {
	v := p.GetVendor()
	n := &flowProvider{Name: p.GetName(), DPA: v.GetDpaSigned(), Enabled: p.GetEnabled(), Routable: p.GetRoutable(),
		Region: strings.Join(v.GetRegions(), ", "), Models: map[string]bool{}, Retention: "provider retention"}
	if v.GetZeroDataRetention() {
		n.Retention = "zero retention"
	}
	switch exp := v.GetSoc2ReportExpiry(); {
	case exp == nil:
		n.ReportStatus = "no SOC 2 report"
	case exp.AsTime().Before(now):
		n.ReportStatus = "SOC 2 report EXPIRED " + exp.AsTime().Format("2006-01-02")
	default:
		n.ReportStatus = "SOC 2 report to " + exp.AsTime().Format("2006-01-02")
	}
	return n
}

// listAllPrincipals maps every principal id to its roles.
func listAllPrincipals(ctx context.Context, a *api) (map[string][]string, error) {
	out := map[string][]string{}
	req := &identityv1.ListPrincipalsRequest{PageSize: 500}
	if err := everyPage(ctx, a.identity.ListPrincipals, req, func(t string) { req.PageToken = t }, func(page *identityv1.ListPrincipalsResponse) bool {
		for _, p := range page.GetPrincipals() {
			out[p.GetId()] = p.GetRoles()
		}
		return true
	}); err != nil {
		return nil, explain("list principals", err)
	}
	return out, nil
}

// queryAll pages through an audit query; progress, when set, is told the running count.
func queryAll(ctx context.Context, a *api, req *auditv1.QueryRequest, progress func(int)) ([]*auditv1.Record, error) {
	req.PageSize = 1000
	var recs []*auditv1.Record
	if err := everyPage(ctx, a.audit.Query, req, func(t string) { req.PageToken = t }, func(page *auditv1.QueryResponse) bool {
		recs = append(recs, page.GetRecords()...)
		if progress != nil {
			progress(len(recs))
		}
		return true
	}); err != nil {
		return nil, explain("audit query", err)
	}
	return recs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedEdges(m map[[2]string]*flowVolume) [][2]string {
	ks := make([][2]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i][0]+"\x00"+ks[i][1] < ks[j][0]+"\x00"+ks[j][1] })
	return ks
}

func (g *flowGraph) callerLabel(c *flowCaller) []string {
	lines := []string{c.Kind + ": " + c.ID}
	if apps := sortedKeys(c.Apps); len(apps) > 0 {
		lines = append(lines, "apps: "+wrapList(apps, 3))
	}
	return lines
}

func (g *flowGraph) profileLabel(p *flowProfile) []string {
	lines := []string{"redaction profile: " + p.Name}
	if len(p.Classes) == 0 {
		return append(lines, "no data classes seen")
	}
	var cs []string
	for _, c := range sortedKeys(p.Classes) {
		if n := p.Classes[c]; n > 0 {
			cs = append(cs, fmt.Sprintf("%s ×%d", c, n))
		} else {
			cs = append(cs, c)
		}
	}
	return append(lines, "classes seen: "+wrapList(cs, 2))
}

func (g *flowGraph) providerLabel(p *flowProvider) []string {
	dpa := "no DPA"
	if p.DPA {
		dpa = "DPA signed"
	}
	region := p.Region
	if region == "" {
		region = "region unknown"
	}
	state := "enabled"
	if !p.Enabled {
		state = "DISABLED"
	} else if !p.Routable {
		state = "not routable"
	}
	lines := []string{"provider: " + p.Name + " (" + state + ")", "region: " + region, dpa + " · " + p.Retention, p.ReportStatus}
	if ms := sortedKeys(p.Models); len(ms) > 0 {
		lines = append(lines, "models: "+wrapList(ms, 3))
	}
	return lines
}

func (v *flowVolume) label() string {
	s := fmt.Sprintf("%d calls", v.Calls)
	if v.Denied > 0 {
		s += fmt.Sprintf(" (%d refused)", v.Denied)
	}
	if v.Tokens > 0 {
		s += fmt.Sprintf(", %d tokens", v.Tokens)
	}
	return s
}

// wrapList joins items, per items to a line, so long lists stay legible.
func wrapList(items []string, per int) string {
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			if i%per == 0 {
				b.WriteString(",\n")
			} else {
				b.WriteString(", ")
			}
		}
		b.WriteString(it)
	}
	return b.String()
}

func nodeID(kind, name string) string { return kind + "_" + fmt.Sprintf("%x", name) }

func (g *flowGraph) title() string {
	return fmt.Sprintf("Bulwark data flow · %s · %s to %s · %d LLM calls", g.Env, g.From.Format("2006-01-02"), g.To.Format("2006-01-02"), g.Records)
}

func dotEscape(lines []string) string {
	s := strings.Join(lines, "\n")
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return strings.ReplaceAll(s, "\n", `\n`)
}

// dot renders the graph in Graphviz's language, left to right in three ranks.
func (g *flowGraph) dot() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph bulwark_dataflow {\n  rankdir=LR; nodesep=0.4; ranksep=1.2;\n  label=\"%s\"; labelloc=t; fontname=\"Helvetica\"; fontsize=16;\n", dotEscape([]string{g.title()}))
	b.WriteString("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=10];\n")
	b.WriteString("  subgraph cluster_callers { label=\"Callers\"; color=\"#9aa5b1\";\n")
	for _, id := range sortedKeys(g.Callers) {
		fmt.Fprintf(&b, "    %s [label=\"%s\", fillcolor=\"#e3f2fd\"];\n", nodeID("c", id), dotEscape(g.callerLabel(g.Callers[id])))
	}
	b.WriteString("  }\n  subgraph cluster_bulwark { label=\"Bulwark (redaction before anything leaves)\"; color=\"#9aa5b1\";\n")
	for _, name := range sortedKeys(g.Profiles) {
		fmt.Fprintf(&b, "    %s [label=\"%s\", fillcolor=\"#fff8e1\"];\n", nodeID("r", name), dotEscape(g.profileLabel(g.Profiles[name])))
	}
	b.WriteString("  }\n  subgraph cluster_providers { label=\"Subprocessors\"; color=\"#9aa5b1\";\n")
	for _, name := range sortedKeys(g.Providers) {
		p := g.Providers[name]
		fill := "#e8f5e9"
		if !p.DPA || strings.Contains(p.ReportStatus, "EXPIRED") || strings.HasPrefix(p.ReportStatus, "no ") {
			fill = "#ffebee"
		}
		fmt.Fprintf(&b, "    %s [label=\"%s\", fillcolor=\"%s\"];\n", nodeID("p", name), dotEscape(g.providerLabel(p)), fill)
	}
	b.WriteString("  }\n")
	for _, k := range sortedEdges(g.CallerProfile) {
		fmt.Fprintf(&b, "  %s -> %s [label=\"%s\"];\n", nodeID("c", k[0]), nodeID("r", k[1]), dotEscape([]string{g.CallerProfile[k].label()}))
	}
	for _, k := range sortedEdges(g.ProfileProvider) {
		fmt.Fprintf(&b, "  %s -> %s [label=\"%s\"];\n", nodeID("r", k[0]), nodeID("p", k[1]), dotEscape([]string{g.ProfileProvider[k].label()}))
	}
	b.WriteString("}\n")
	return b.String()
}

func mermaidText(lines []string) string {
	s := strings.Join(lines, "<br/>")
	return strings.NewReplacer(`"`, "#quot;", "\n", "<br/>").Replace(s)
}

// mermaid renders a flowchart for Markdown viewers.
func (g *flowGraph) mermaid() string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: %s\n---\nflowchart LR\n", g.title())
	b.WriteString("  subgraph Callers\n")
	for _, id := range sortedKeys(g.Callers) {
		fmt.Fprintf(&b, "    %s[\"%s\"]\n", nodeID("c", id), mermaidText(g.callerLabel(g.Callers[id])))
	}
	b.WriteString("  end\n  subgraph Bulwark\n")
	for _, name := range sortedKeys(g.Profiles) {
		fmt.Fprintf(&b, "    %s[\"%s\"]\n", nodeID("r", name), mermaidText(g.profileLabel(g.Profiles[name])))
	}
	b.WriteString("  end\n  subgraph Subprocessors\n")
	for _, name := range sortedKeys(g.Providers) {
		fmt.Fprintf(&b, "    %s[\"%s\"]\n", nodeID("p", name), mermaidText(g.providerLabel(g.Providers[name])))
	}
	b.WriteString("  end\n")
	for _, k := range sortedEdges(g.CallerProfile) {
		fmt.Fprintf(&b, "  %s -- \"%s\" --> %s\n", nodeID("c", k[0]), mermaidText([]string{g.CallerProfile[k].label()}), nodeID("r", k[1]))
	}
	for _, k := range sortedEdges(g.ProfileProvider) {
		fmt.Fprintf(&b, "  %s -- \"%s\" --> %s\n", nodeID("r", k[0]), mermaidText([]string{g.ProfileProvider[k].label()}), nodeID("p", k[1]))
	}
	return b.String()
}

// svg lays out the DOT graph with Graphviz (compiled to WebAssembly, no cgo).
func (g *flowGraph) svg(ctx context.Context, w io.Writer) error {
	gv, err := graphviz.New(ctx)
	if err != nil {
		return fmt.Errorf("start graphviz: %w", err)
	}
	defer gv.Close()
	graph, err := graphviz.ParseBytes([]byte(g.dot()))
	if err != nil {
		return fmt.Errorf("parse the diagram: %w", err)
	}
	defer graph.Close()
	if err := gv.Render(ctx, graph, graphviz.SVG, w); err != nil {
		return fmt.Errorf("render svg: %w", err)
	}
	return nil
}

func (g *flowGraph) write(ctx context.Context, w io.Writer, format string) error {
	switch format {
	case "dot":
		_, err := io.WriteString(w, g.dot())
		return err
	case "mermaid":
		_, err := io.WriteString(w, g.mermaid())
		return err
	case "svg":
		return g.svg(ctx, w)
	}
	return fmt.Errorf("--format %q: want svg, mermaid or dot", format)
}
