package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

// audit query: the blast radius of an incident from the audit log. It joins
// the "audit" group that audit.go builds (export and verify).
func init() {
	rootHooks = append(rootHooks, func(root *cobra.Command) {
		for _, c := range root.Commands() {
			if c.Name() == "audit" {
				c.AddCommand(auditQueryCmd())
				c.Short = "Query the audit log; export and verify evidence bundles"
				for _, sub := range c.Commands() {
					if sub.Name() == "export" {
						useGlobalConnection(root, sub)
					}
				}
				return
			}
		}
		cmd := &cobra.Command{Use: "audit", Short: "Query the audit log"}
		cmd.AddCommand(auditQueryCmd())
		root.AddCommand(cmd)
	})
}

const decisionPrefix = "DECISION_"

type auditQuery struct {
	from, to, decision string
	limit              int
	raw, summary       bool
}

func auditQueryCmd() *cobra.Command {
	var q auditQuery
	var req auditv1.QueryRequest
	c := &cobra.Command{
		Use:   "query [--from T] [--to T] [--principal ID] [--key KEY_ID] [--model M] [--provider P] [--decision D] [--request-id R]",
		Short: "Find audit records: who called what, through which provider, with what decision",
		Long: `query pages through the audit log, oldest first, and prints one row per record (or --json).

Times are RFC 3339 or a duration back from now (90m, 24h, 7d). Decisions: allowed, denied_auth,
denied_policy, denied_rate_limit, denied_redaction, failed_provider, failed_internal. Kinds:
llm_call, admin_action, anomaly, limit_exceeded.

For a provider incident, the blast radius is
  bulwarkctl audit query --provider openai --from 2026-03-01T00:00:00Z --summary
which counts the calls, principals, keys and data classes that reached that provider.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditQuery(cmd, q, &req)
		},
	}
	f := c.Flags()
	f.StringVar(&q.from, "from", "", "earliest record time")
	f.StringVar(&q.to, "to", "", "latest record time")
	f.StringVar(&req.PrincipalId, "principal", "", "principal (the actor, for admin actions)")
	f.StringVar(&req.TeamId, "team", "", "team")
	f.StringVar(&req.ApiKeyId, "key-id", "", "API key id")
	f.StringVar(&req.Model, "model", "", "requested or served model")
	f.StringVar(&req.Provider, "provider", "", "provider")
	f.StringVar(&q.decision, "decision", "", "decision, e.g. allowed or denied_policy")
	f.StringVar(&req.Kind, "kind", "", "llm_call, admin_action, anomaly or limit_exceeded")
	f.StringVar(&req.RequestId, "request-id", "", "the record of one request")
	f.IntVar(&q.limit, "limit", 1000, "stop after this many records; 0 for all")
	f.BoolVar(&q.raw, "raw", false, "with --json, keep each record's exact bytes and leaf hash")
	f.BoolVar(&q.summary, "summary", false, "print counts by principal, key, provider, model, decision and data class instead of records")
	_ = c.RegisterFlagCompletionFunc("decision", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for k, v := range auditv1.Decision_value {
			if v != 0 {
				out = append(out, enumName(k, decisionPrefix))
			}
		}
		return sortStrings(out), cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"llm_call", "admin_action", "anomaly", "limit_exceeded"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func runAuditQuery(cmd *cobra.Command, q auditQuery, req *auditv1.QueryRequest) error {
	now := time.Now()
	var err error
	if req.StartTime, err = parseTime(q.from, now); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if req.EndTime, err = parseTime(q.to, now); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	d, err := parseEnum(q.decision, decisionPrefix, auditv1.Decision_value)
	if err != nil {
		return fmt.Errorf("--decision: %w", err)
	}
	req.Decision = auditv1.Decision(d)
	a, err := newAPI(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()

	// A spinner with the count on a terminal: a blast-radius query can page for a while.
	var bar *progressbar.ProgressBar
	if f, ok := cmd.ErrOrStderr().(*os.File); ok && isTerminal(f) {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("reading audit records"),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	acc := &auditv1.QueryResponse{}
	req.PageSize = 1000
	if q.limit > 0 {
		req.PageSize = int32(min(q.limit, 1000))
	}
	if err := everyPage(ctx, a.audit.Query, req, func(t string) { req.PageToken = t }, func(page *auditv1.QueryResponse) bool {
		acc.Records = append(acc.Records, page.GetRecords()...)
		if bar != nil {
			_ = bar.Set(len(acc.Records))
		}
		return q.limit <= 0 || len(acc.Records) < q.limit
	}); err != nil {
		return explain("audit query", err)
	}
	if bar != nil {
		_ = bar.Finish()
	}
	more := q.limit > 0 && (len(acc.Records) > q.limit || req.PageToken != "")
	if q.limit > 0 && len(acc.Records) > q.limit {
		acc.Records = acc.Records[:q.limit]
	}
	if more {
		acc.NextPageToken = req.PageToken
		fmt.Fprintf(cmd.ErrOrStderr(), "showing the first %d records; raise --limit (0 for all) or narrow the query\n", q.limit)
	}
	if q.summary {
		return printAuditSummary(cmd, a.json, acc.Records)
	}
	if a.json {
		if !q.raw {
			for _, r := range acc.Records {
				r.Data, r.LeafHash = nil, nil
			}
		}
		return printJSON(out(cmd), acc)
	}
	t := newTable(out(cmd), "INDEX", "TIME", "KIND", "PRINCIPAL", "KEY", "MODEL", "PROVIDER", "DECISION", "REQUEST / ACTION")
	for _, r := range acc.Records {
		row := recordRow(r)
		t.row(r.GetIndex(), row.time, row.kind, row.principal, row.key, row.model, row.provider, row.decision, row.what)
	}
	return t.flush()
}

type recordFields struct {
	time, kind, principal, key, model, provider, decision, what string
	team                                                        string
	dataClasses                                                 []string
}

// recordRow flattens the record kinds into one row shape.
func recordRow(r *auditv1.Record) recordFields {
	f := recordFields{time: ts(r.GetReceiveTime()), kind: r.GetSubject()[strings.LastIndex(r.GetSubject(), ".")+1:]}
	ev := r.GetEvent()
	if ev.GetTime() != nil {
		f.time = ts(ev.GetTime())
	}
	switch {
	case ev.GetLlmCall() != nil:
		c := ev.GetLlmCall()
		model := c.GetModelRequested()
		if c.GetModelServed() != "" && c.GetModelServed() != model {
			model += "→" + c.GetModelServed()
		}
		f.kind, f.principal, f.key, f.model, f.provider = "llm_call", c.GetPrincipalId(), c.GetApiKeyId(), model, c.GetProvider()
		f.decision, f.what, f.team, f.dataClasses = enumName(c.GetDecision().String(), decisionPrefix), c.GetRequestId(), c.GetTeamId(), c.GetDataClasses()
	case ev.GetAdminAction() != nil:
		ad := ev.GetAdminAction()
		f.kind, f.principal, f.what = "admin_action", ad.GetActor(), ad.GetAction()+" "+ad.GetTarget()
		if ad.GetBreakGlass() {
			f.what += " (break-glass)"
		}
	case r.GetAlert().GetAnomaly() != nil:
		an := r.GetAlert().GetAnomaly()
		f.kind, f.principal, f.what = "anomaly", an.GetSubjectKind()+":"+an.GetSubjectId(), enumName(an.GetKind().String(), "ANOMALY_KIND_")
		f.time = ts(an.GetTime())
	case r.GetAlert().GetLimitExceeded() != nil:
		le := r.GetAlert().GetLimitExceeded()
		f.kind, f.principal, f.key, f.model, f.provider = "limit_exceeded", le.GetSubject().GetPrincipalId(), le.GetSubject().GetApiKeyId(),
			le.GetSubject().GetModel(), le.GetSubject().GetProvider()
		f.what, f.time = le.GetRequestId()+" "+le.GetLimit().GetName(), ts(le.GetTime())
	}
	return f
}

// printAuditSummary counts records by the dimensions an incident responder needs.
func printAuditSummary(cmd *cobra.Command, jsonOut bool, recs []*auditv1.Record) error {
	type counts map[string]int
	s := map[string]counts{"principal": {}, "team": {}, "api_key": {}, "provider": {}, "model": {}, "decision": {}, "data_class": {}, "kind": {}}
	var first, last string
	for _, r := range recs {
		f := recordRow(r)
		if first == "" {
			first = f.time
		}
		last = f.time
		s["kind"][f.kind]++
		if f.kind != "llm_call" {
			continue
		}
		for dim, v := range map[string]string{"principal": f.principal, "team": f.team, "api_key": f.key, "provider": f.provider, "model": f.model, "decision": f.decision} {
			if v != "" {
				s[dim][v]++
			}
		}
		for _, dc := range f.dataClasses {
			s["data_class"][dc]++
		}
	}
	if jsonOut {
		// A plain map: protojson has no message for this summary.
		doc := map[string]any{"records": len(recs), "first": first, "last": last}
		for dim, c := range s {
			doc[dim] = c
		}
		b, err := jsonMarshalIndent(doc)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out(cmd), "%s\n", b)
		return err
	}
	fmt.Fprintf(out(cmd), "%d records from %s to %s\n\n", len(recs), first, last)
	t := newTable(out(cmd), "DIMENSION", "VALUE", "RECORDS")
	for _, dim := range []string{"kind", "decision", "provider", "model", "principal", "team", "api_key", "data_class"} {
		vals := keys(s[dim])
		sortByCount(vals, s[dim])
		for _, v := range vals {
			t.row(dim, v, s[dim][v])
		}
	}
	return t.flush()
}

func sortByCount(vals []string, c map[string]int) {
	for i := 1; i < len(vals); i++ {
		for j := i; j > 0 && (c[vals[j]] > c[vals[j-1]] || c[vals[j]] == c[vals[j-1]] && vals[j] < vals[j-1]); j-- {
			vals[j], vals[j-1] = vals[j-1], vals[j]
		}
	}
}

// useGlobalConnection lets "audit export" (which has its own --url and
// --token) follow the global connection settings when its own are not given:
// --audit-url, else BULWARK_AUDIT_URL, else the base --url; --key or
// BULWARK_KEY when neither --token nor BULWARK_TOKEN is set.
func useGlobalConnection(root, export *cobra.Command) {
	prev := export.PreRunE
	export.PreRunE = func(cmd *cobra.Command, args []string) error {
		f := cmd.Flags()
		if u := f.Lookup("url"); u != nil && !u.Changed && os.Getenv("BULWARK_AUDIT_URL") == "" {
			url := flagString(cmd, flagAuditURL)
			if url == "" {
				url, _ = root.PersistentFlags().GetString(flagURL)
			}
			if err := u.Value.Set(url); err != nil {
				return err
			}
		}
		if tk := f.Lookup("token"); tk != nil && !tk.Changed && os.Getenv("BULWARK_TOKEN") == "" {
			key := flagString(cmd, flagKey)
			if key == "" {
				key = os.Getenv("BULWARK_KEY")
			}
			if err := tk.Value.Set(key); err != nil {
				return err
			}
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}
