package main

// evidence builds one SOC 2 evidence pack from a running deployment: a
// tar.gz whose INDEX.md (and index.json) says which file answers which
// control. CC6 access, CC3 classification, CC7 monitoring (with the audit
// service's verifiable bundle), CC8 change management, CC9 vendors, and the
// data-flow diagram.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/audit/auditcli"
	"github.com/bulwarkhq/bulwark/services/platform"
)

func init() { register(newEvidenceCmd) }

// evidenceControls are the criteria the pack answers, in index order.
var evidenceControls = []struct{ ID, Title string }{
	{"CC6", "Logical and physical access: principals, roles, keys per environment, MFA, access matrix"},
	{"CC3", "Risk assessment: data classes, redaction profiles, findings"},
	{"CC7", "System operations: verifiable audit log, alerts, retention"},
	{"CC8", "Change management: prompt, policy and route changes with approvals and staging evidence"},
	{"CC9", "Risk mitigation / vendors: subprocessor registry, report expiry, DPAs"},
	{"DATAFLOW", "Data-flow diagram (supports CC3, CC6 and CC9)"},
}

type evidenceFile struct {
	Path, Control, Answers string
	data                   []byte
}

type evidencePack struct {
	files []*evidenceFile
}

func (p *evidencePack) add(control, path, answers string, data []byte) {
	p.files = append(p.files, &evidenceFile{Path: control + "/" + path, Control: control, Answers: answers, data: data})
}

func (p *evidencePack) addJSON(control, path, answers string, v any) error {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = protojson.MarshalOptions{Multiline: true, UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	p.add(control, path, answers, append(b, '\n'))
	return nil
}

func (p *evidencePack) addCSV(control, path, answers string, rows [][]string) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.WriteAll(rows); err != nil {
		return err
	}
	p.add(control, path, answers, buf.Bytes())
	return nil
}

func newEvidenceCmd() *cobra.Command {
	var fromS, toS, outFile string
	var envs []string
	cmd := &cobra.Command{
		Use:   "evidence --from T --to T [--out FILE] [--env ENV ...]",
		Short: "Build a SOC 2 evidence pack (CC3, CC6, CC7, CC8, CC9 and the data-flow diagram) as one tar.gz",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			from, err := parseTime(fromS, now)
			if err != nil || from == nil {
				return fmt.Errorf("--from: %v", orMissing(err))
			}
			if toS == "now" {
				toS = "0s"
			}
			to, err := parseTime(toS, now)
			if err != nil || to == nil {
				return fmt.Errorf("--to: %v", orMissing(err))
			}
			if !to.AsTime().After(from.AsTime()) {
				return fmt.Errorf("--to must be after --from")
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			if outFile == "" {
				outFile = fmt.Sprintf("bulwark-evidence-%s-%s.tar.gz", from.AsTime().Format("20060102"), to.AsTime().Format("20060102"))
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			bar := progressbar.NewOptions(9, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("evidence"),
				progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(50*time.Millisecond))
			step := func(what string) {
				bar.Describe(what)
				_ = bar.Add(1)
			}
			pack, err := buildEvidence(ctx, cmd, a, from, to, envs, step)
			if err != nil {
				return err
			}
			if err := pack.writeTarGz(outFile, from.AsTime(), to.AsTime()); err != nil {
				return err
			}
			_ = bar.Finish()
			fmt.Fprintf(out(cmd), "evidence pack %s: %d files for %s to %s (see INDEX.md)\n", outFile, len(pack.files)+2,
				from.AsTime().Format(time.RFC3339), to.AsTime().Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&fromS, "from", "", "start of the period (RFC 3339, a date, or a duration ago such as 90d)")
	f.StringVar(&toS, "to", "now", "end of the period")
	f.StringVar(&outFile, "out", "", "output file (default bulwark-evidence-FROM-TO.tar.gz)")
	f.StringSliceVar(&envs, "env", nil, "environments to cover (default: every environment a principal holds)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func orMissing(err error) any {
	if err == nil {
		return "required"
	}
	return err
}

func buildEvidence(ctx context.Context, cmd *cobra.Command, a *api, from, to *timestamppb.Timestamp, envs []string, step func(string)) (*evidencePack, error) {
	p := &evidencePack{}
	call := func() (context.Context, context.CancelFunc) {
		if a.timeout <= 0 {
			return context.WithCancel(ctx)
		}
		return context.WithTimeout(ctx, a.timeout)
	}

	// CC6: principals, roles, keys, MFA, access matrix.
	step("principals and keys")
	cctx, cancel := call()
	defer cancel()
	var principals []*identityv1.Principal
	preq := &identityv1.ListPrincipalsRequest{PageSize: 500}
	if err := everyPage(cctx, a.identity.ListPrincipals, preq, func(t string) { preq.PageToken = t }, func(page *identityv1.ListPrincipalsResponse) bool {
		principals = append(principals, page.GetPrincipals()...)
		return true
	}); err != nil {
		return nil, explain("list principals", err)
	}
	if len(envs) == 0 {
		set := map[string]bool{}
		for _, pr := range principals {
			for _, e := range pr.GetEnvironments() {
				if e != "*" { // a wildcard grant names no environment of its own
					set[e] = true
				}
			}
		}
		envs = sortedKeys(set)
	}
	if len(envs) == 0 {
		envs = []string{"dev"}
	}
	roles, err := a.identity.ListRoles(cctx, connect.NewRequest(&identityv1.ListRolesRequest{}))
	if err != nil {
		return nil, explain("list roles", err)
	}
	if err := p.addJSON("CC6", "principals.json", "CC6.1/CC6.2: every principal (people, services, teams), its roles, environments and status",
		&identityv1.ListPrincipalsResponse{Principals: principals}); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC6", "roles.json", "CC6.3: roles and the permissions each grants", roles.Msg); err != nil {
		return nil, err
	}
	keysByEnv := map[string][]*identityv1.ApiKey{}
	active := map[string]int{}
	for _, pr := range principals {
		kreq := &identityv1.ListApiKeysRequest{PrincipalId: pr.GetId(), IncludeRevoked: true, PageSize: 500}
		if err := everyPage(cctx, a.identity.ListApiKeys, kreq, func(t string) { kreq.PageToken = t }, func(page *identityv1.ListApiKeysResponse) bool {
			for _, k := range page.GetApiKeys() {
				keysByEnv[k.GetEnvironment()] = append(keysByEnv[k.GetEnvironment()], k)
				if k.GetRevokeTime() == nil {
					active[pr.GetId()]++
				}
			}
			return true
		}); err != nil {
			return nil, explain("list keys", err)
		}
	}
	keyRows := [][]string{{"environment", "key_id", "principal", "name", "created", "expires", "last_used", "revoked", "rotated_to", "created_by"}}
	for _, env := range sortedKeys(keysByEnv) {
		for _, k := range keysByEnv[env] {
			keyRows = append(keyRows, []string{env, k.GetId(), k.GetPrincipalId(), k.GetName(), csvTime(k.GetCreateTime()),
				csvTime(k.GetExpireTime()), csvTime(k.GetLastUseTime()), csvTime(k.GetRevokeTime()), k.GetRotatedTo(), k.GetCreatedBy()})
		}
	}
	if err := p.addCSV("CC6", "api-keys.csv", "CC6.1/CC6.2: key inventory per environment with creation, rotation (rotated_to), expiry and revocation; no secret", keyRows); err != nil {
		return nil, err
	}
	perms := map[string][]string{}
	for _, r := range roles.Msg.GetRoles() {
		perms[r.GetName()] = r.GetPermissions()
	}
	matrix := [][]string{{"principal", "kind", "team", "roles", "environments", "permissions", "active_keys", "disabled"}}
	for _, pr := range principals {
		set := map[string]bool{}
		for _, r := range pr.GetRoles() {
			for _, pm := range perms[r] {
				set[pm] = true
			}
		}
		matrix = append(matrix, []string{pr.GetId(), strings.TrimPrefix(pr.GetKind().String(), "PRINCIPAL_KIND_"), pr.GetTeamId(),
			strings.Join(pr.GetRoles(), " "), strings.Join(pr.GetEnvironments(), " "), strings.Join(sortedKeys(set), " "),
			fmt.Sprint(active[pr.GetId()]), fmt.Sprint(pr.GetDisabled())})
	}
	if err := p.addCSV("CC6", "access-matrix.csv", "CC6.3: who may do what where (principal × roles × environments × permissions)", matrix); err != nil {
		return nil, err
	}

	// Policies per environment: MFA (CC6), data classes and retention (CC3, CC7), versions (CC8).
	step("policies")
	type envPolicy struct {
		Environment, Version, ContentHash, Approver, ChangeID string
		MFA                                                   any `json:"mfa"`
		DataClasses                                           any `json:"data_classes"`
		Providers                                             any `json:"providers"`
		Defaults                                              any `json:"defaults"`
	}
	var policies []envPolicy
	var versions []*identityv1.PolicyVersion
	for _, env := range envs {
		res, err := a.policy.GetPolicy(cctx, connect.NewRequest(&identityv1.GetPolicyRequest{Environment: env}))
		if err != nil {
			return nil, explain("get policy "+env, err)
		}
		pv := res.Msg.GetPolicy()
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(pv.GetDocument()), &doc); err != nil {
			return nil, fmt.Errorf("parse the %s policy: %w", env, err)
		}
		policies = append(policies, envPolicy{Environment: env, Version: pv.GetVersion(), ContentHash: pv.GetContentHash(),
			Approver: pv.GetApprover(), ChangeID: pv.GetChangeId(), MFA: doc["mfa"], DataClasses: doc["data_classes"],
			Providers: doc["providers"], Defaults: doc["defaults"]})
		vres, err := a.policy.ListPolicyVersions(cctx, connect.NewRequest(&identityv1.ListPolicyVersionsRequest{Environment: env, IncludeDocuments: true}))
		if err != nil {
			return nil, explain("list policy versions "+env, err)
		}
		versions = append(versions, vres.Msg.GetVersions()...)
	}
	mfa := map[string]any{}
	classes := map[string]any{}
	retention := map[string]any{}
	for _, pol := range policies {
		mfa[pol.Environment] = map[string]any{"policy_version": pol.Version, "mfa": pol.MFA,
			"note": "roles listed need a second factor (OIDC amr) for every action; actions listed need one for anyone"}
		classes[pol.Environment] = map[string]any{"policy_version": pol.Version, "data_classes": pol.DataClasses, "defaults": pol.Defaults}
		d, _ := pol.Defaults.(map[string]any)
		retention[pol.Environment] = map[string]any{"policy_version": pol.Version, "payload_retention": d["payload_retention"], "strict_audit": d["strict_audit"]}
	}
	if err := p.addJSON("CC6", "mfa.json", "CC6.1: MFA enforcement settings per environment (from the active policy)", mfa); err != nil {
		return nil, err
	}

	// CC3: data classes, redaction profiles, finding counts.
	step("data classes and redaction profiles")
	if err := p.addJSON("CC3", "data-classes.json", "CC3.2: data classes per environment and where each may go", classes); err != nil {
		return nil, err
	}
	profiles, err := redactionClient(cmd).ListProfiles(cctx, connect.NewRequest(&redactionv1.ListProfilesRequest{}))
	if err != nil {
		return nil, explain("list redaction profiles", err)
	}
	if err := p.addJSON("CC3", "redaction-profiles.json", "CC3.2: what each redaction profile masks, tokenizes or blocks", profiles.Msg); err != nil {
		return nil, err
	}
	step("audit records")
	recs, err := queryAll(cctx, a, &auditv1.QueryRequest{StartTime: from, EndTime: to}, nil)
	if err != nil {
		return nil, err
	}
	findings := map[[3]string]int64{}
	var adminActions []*auditv1.Record
	var alertRecs []*auditv1.Record
	for _, r := range recs {
		ev := r.GetEvent()
		if c := ev.GetLlmCall(); c != nil {
			for class, n := range c.GetFindings() {
				findings[[3]string{ev.GetEnvironment(), class, strings.TrimPrefix(c.GetDecision().String(), "DECISION_")}] += int64(n)
			}
		}
		if ev.GetAdminAction() != nil {
			r.Data, r.LeafHash = nil, nil
			adminActions = append(adminActions, r)
		}
		if r.GetAlert() != nil {
			r.Data, r.LeafHash = nil, nil
			alertRecs = append(alertRecs, r)
		}
	}
	frows := [][]string{{"environment", "data_class", "decision", "findings"}}
	fkeys := make([][3]string, 0, len(findings))
	for k := range findings {
		fkeys = append(fkeys, k)
	}
	sort.Slice(fkeys, func(i, j int) bool { return strings.Join(fkeys[i][:], "\x00") < strings.Join(fkeys[j][:], "\x00") })
	for _, k := range fkeys {
		frows = append(frows, []string{k[0], k[1], k[2], fmt.Sprint(findings[k])})
	}
	if err := p.addCSV("CC3", "finding-counts.csv", "CC3.2: sensitive data found in calls during the period, by class and outcome (counts only)", frows); err != nil {
		return nil, err
	}

	// CC7: the verifiable audit bundle, alerts, retention.
	step("audit bundle")
	var bundle bytes.Buffer
	n, err := auditcli.Export(ctx, a.audit, &auditv1.ExportEvidenceRequest{StartTime: from, EndTime: to}, "", &bundle, io.Discard)
	if err != nil {
		return nil, explain("audit export", err)
	}
	p.add("CC7", "audit-evidence.bundle", fmt.Sprintf("CC7.2/CC7.3: %d audit records with signed checkpoints and inclusion/consistency proofs; verify with: bulwarkctl audit verify CC7/audit-evidence.bundle --key-file CC7/verifier-key.txt", n), bundle.Bytes())
	pk, err := a.audit.GetPublicKey(cctx, connect.NewRequest(&auditv1.GetPublicKeyRequest{}))
	if err != nil {
		return nil, explain("audit public key", err)
	}
	p.add("CC7", "verifier-key.txt", "CC7.2: the audit log's checkpoint verifier key", []byte(pk.Msg.GetVerifierKey()+"\n"))
	step("alerts")
	var alerts []*ratelimitv1.AnomalyEvent
	areq := &ratelimitv1.ListAlertsRequest{Since: from, PageSize: 500}
	if err := everyPage(cctx, a.ratelimit.ListAlerts, areq, func(t string) { areq.PageToken = t }, func(page *ratelimitv1.ListAlertsResponse) bool {
		alerts = append(alerts, page.GetAlerts()...)
		return true
	}); err != nil {
		return nil, explain("list alerts", err)
	}
	if err := p.addJSON("CC7", "alerts.json", "CC7.3: usage anomaly alerts raised in the period", &ratelimitv1.ListAlertsResponse{Alerts: alerts}); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC7", "alert-records.json", "CC7.4: alerts and limit events as recorded in the audit log (handling trail)", &auditv1.QueryResponse{Records: alertRecs}); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC7", "retention.json", "CC7.2: payload retention and strict-audit settings per environment", retention); err != nil {
		return nil, err
	}

	// CC8: changes with approvals and staging evidence, policy versions, admin actions.
	step("changes")
	var changes []*identityv1.Change
	creq := &identityv1.ListChangesRequest{PageSize: 500}
	if err := everyPage(cctx, a.change.ListChanges, creq, func(t string) { creq.PageToken = t }, func(page *identityv1.ListChangesResponse) bool {
		changes = append(changes, page.GetChanges()...)
		return true
	}); err != nil {
		return nil, explain("list changes", err)
	}
	if err := p.addJSON("CC8", "changes.json", "CC8.1: every prompt/policy/route change with proposer, approvals, staging evidence and promotion", &identityv1.ListChangesResponse{Changes: changes}); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC8", "policy-versions.json", "CC8.1: every policy version per environment with author, approver and change id", &identityv1.ListPolicyVersionsResponse{Versions: versions}); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC8", "admin-actions.json", "CC8.1: admin actions in the audit log (keys, principals, routes, providers) during the period", &auditv1.QueryResponse{Records: adminActions}); err != nil {
		return nil, err
	}

	// CC9: subprocessors.
	step("subprocessors")
	subRows := [][]string{{"environment", "provider", "legal_name", "enabled", "routable", "dpa_signed", "baa_signed", "zero_data_retention", "regions", "soc2_report_expiry", "days_until_report_expiry", "incident_contact"}}
	var allProviders []*routerv1.Provider
	for _, env := range envs {
		res, err := a.router.ListProviders(cctx, connect.NewRequest(&routerv1.ListProvidersRequest{Environment: env}))
		if err != nil {
			return nil, explain("list providers", err)
		}
		for _, pr := range res.Msg.GetProviders() {
			v := pr.GetVendor()
			subRows = append(subRows, []string{env, pr.GetName(), v.GetLegalName(), fmt.Sprint(pr.GetEnabled()), fmt.Sprint(pr.GetRoutable()),
				fmt.Sprint(v.GetDpaSigned()), fmt.Sprint(v.GetBaaSigned()), fmt.Sprint(v.GetZeroDataRetention()), strings.Join(v.GetRegions(), " "),
				csvTime(v.GetSoc2ReportExpiry()), fmt.Sprint(pr.GetDaysUntilReportExpiry()), v.GetIncidentContact()})
			allProviders = append(allProviders, pr)
		}
	}
	if err := p.addCSV("CC9", "subprocessors.csv", "CC9.2: subprocessor registry per environment with SOC 2 report expiry, DPA/BAA and retention", subRows); err != nil {
		return nil, err
	}
	if err := p.addJSON("CC9", "subprocessors.json", "CC9.2: the same registry as returned by the router", &routerv1.ListProvidersResponse{Providers: allProviders}); err != nil {
		return nil, err
	}

	// The data-flow diagram of the first environment over the period.
	step("data-flow diagram")
	g, err := collectFlow(cctx, a, envs[0], from.AsTime(), to.AsTime())
	if err != nil {
		return nil, err
	}
	var svg bytes.Buffer
	if err := g.svg(ctx, &svg); err != nil {
		return nil, err
	}
	p.add("DATAFLOW", "dataflow.svg", "CC3/CC6/CC9: how customer data moves: callers → redaction profile and data classes → providers, with volumes", svg.Bytes())
	p.add("DATAFLOW", "dataflow.mmd", "the same diagram in Mermaid", []byte(g.mermaid()))
	p.add("DATAFLOW", "dataflow.dot", "the same diagram in Graphviz DOT", []byte(g.dot()))
	return p, nil
}

// csvTime formats a timestamp for CSV; unset is empty.
func csvTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return ts(t)
}

// redactionClient reaches the redaction service at --url (mounted beside the others).
func redactionClient(cmd *cobra.Command) redactionv1connect.RedactionServiceClient {
	key := flagString(cmd, flagKey)
	if key == "" {
		key = os.Getenv("BULWARK_KEY")
	}
	opts := []connect.ClientOption{connect.WithInterceptors(bearer(key))}
	if g, _ := cmd.Flags().GetBool(flagGRPC); g {
		opts = append(opts, connect.WithGRPC())
	}
	url := envOr("BULWARK_REDACTION_URL", strings.TrimRight(flagString(cmd, flagURL), "/"))
	return redactionv1connect.NewRedactionServiceClient(platform.HTTPClient(), url, opts...)
}

// evidenceIndex is index.json: which file answers which control.
type evidenceIndex struct {
	From, To  time.Time
	Generated time.Time
	Controls  []evidenceControl `json:"controls"`
}

type evidenceControl struct {
	ID    string              `json:"id"`
	Title string              `json:"title"`
	Files []evidenceIndexFile `json:"files"`
}

type evidenceIndexFile struct {
	Path    string `json:"path"`
	Answers string `json:"answers"`
	Bytes   int    `json:"bytes"`
}

func (p *evidencePack) index(from, to time.Time) (evidenceIndex, []byte) {
	idx := evidenceIndex{From: from, To: to, Generated: time.Now().UTC()}
	var md strings.Builder
	fmt.Fprintf(&md, "# Bulwark SOC 2 evidence pack\n\nPeriod: %s to %s. Generated %s by `bulwarkctl evidence`.\n\n",
		from.Format(time.RFC3339), to.Format(time.RFC3339), idx.Generated.Format(time.RFC3339))
	md.WriteString("Verify the audit log offline: `bulwarkctl audit verify CC7/audit-evidence.bundle --key-file CC7/verifier-key.txt`.\n\n")
	for _, c := range evidenceControls {
		ec := evidenceControl{ID: c.ID, Title: c.Title}
		fmt.Fprintf(&md, "## %s — %s\n\n| file | answers |\n|---|---|\n", c.ID, c.Title)
		for _, f := range p.files {
			if f.Control == c.ID {
				ec.Files = append(ec.Files, evidenceIndexFile{Path: f.Path, Answers: f.Answers, Bytes: len(f.data)})
				fmt.Fprintf(&md, "| `%s` | %s |\n", f.Path, strings.ReplaceAll(f.Answers, "|", "/"))
			}
		}
		md.WriteString("\n")
		idx.Controls = append(idx.Controls, ec)
	}
	return idx, []byte(md.String())
}

func (p *evidencePack) writeTarGz(name string, from, to time.Time) error {
	idx, md := p.index(from, to)
	ij, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	put := func(path string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(data)), ModTime: idx.Generated, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = put("INDEX.md", md)
	if err == nil {
		err = put("index.json", append(ij, '\n'))
	}
	for _, ef := range p.files {
		if err == nil {
			err = put(ef.Path, ef.data)
		}
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
