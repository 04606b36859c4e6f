package main

import (
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

// usage (ratelimit GetUsage) and alerts (ratelimit ListAlerts).
func init() {
	register(newUsageCmd)
	register(newAlertsCmd)
}

func newUsageCmd() *cobra.Command {
	var sub ratelimitv1.Subject
	var limitsFile string
	c := &cobra.Command{
		Use:   "usage --principal ID --env ENV [--model M] [--key KEY_ID] [--team T] [--provider P] [--limits FILE]",
		Short: "Show how much of each limit and budget a subject has left",
		Long: `usage reads the counters of the limits that apply to a subject, without consuming any.

The limits are the ones the environment's policy puts on the principal for --model (asked from the
policy service, as the gateway does), or those in --limits FILE: protobuf JSON of
bulwark.ratelimit.v1.GetUsageRequest's "limits", e.g.
  {"limits": [{"name": "rpm", "kind": "LIMIT_KIND_REQUESTS", "dimensions": ["DIMENSION_PRINCIPAL"], "limit": 60, "period": "60s"}]}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			req := &ratelimitv1.GetUsageRequest{Subject: &sub}
			if limitsFile != "" {
				doc, err := readDoc(cmd, limitsFile)
				if err != nil {
					return err
				}
				if err := protojson.Unmarshal([]byte(doc), req); err != nil {
					return fmt.Errorf("%s: %w", limitsFile, err)
				}
				req.Subject = &sub
			} else {
				if sub.GetPrincipalId() == "" || sub.GetEnvironment() == "" {
					return errors.New("--principal and --env are required to look up the policy's limits (or give --limits FILE)")
				}
				if sub.TeamId == "" {
					p, err := a.identity.GetPrincipal(ctx, connect.NewRequest(&identityv1.GetPrincipalRequest{Id: sub.GetPrincipalId()}))
					if err != nil {
						return explain("get principal", err)
					}
					sub.TeamId = p.Msg.GetPrincipal().GetTeamId()
				}
				dec, err := a.policy.Authorize(ctx, connect.NewRequest(&identityv1.AuthorizeRequest{PrincipalId: sub.GetPrincipalId(), Action: "llm.complete",
					Resource: &identityv1.Resource{Model: sub.GetModel(), Provider: sub.GetProvider(), Environment: sub.GetEnvironment()}}))
				if err != nil {
					return explain("look up the policy's limits", err)
				}
				if !dec.Msg.GetAllowed() {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: policy %s denies this subject (%s); showing the limits it would have\n",
						dec.Msg.GetPolicyVersion(), join(dec.Msg.GetReasons()))
				}
				req.Limits = dec.Msg.GetObligations().GetLimits()
			}
			if len(req.GetLimits()) == 0 {
				if a.json {
					return printJSON(out(cmd), &ratelimitv1.GetUsageResponse{})
				}
				fmt.Fprintln(out(cmd), "no limits apply to this subject")
				return nil
			}
			res, err := a.ratelimit.GetUsage(ctx, connect.NewRequest(req))
			if err != nil {
				return explain("get usage", err)
			}
			if a.json {
				return printJSON(out(cmd), res.Msg)
			}
			t := newTable(out(cmd), "LIMIT", "KIND", "LIMIT VALUE", "REMAINING", "RESETS IN", "RETRY AFTER")
			for _, s := range res.Msg.GetStatuses() {
				t.row(s.GetName(), enumName(s.GetKind().String(), "LIMIT_KIND_"), s.GetLimit(), s.GetRemaining(),
					dur(s.GetResetAfter()), dur(s.GetRetryAfter()))
			}
			return t.flush()
		},
	}
	f := c.Flags()
	f.StringVar(&sub.PrincipalId, "principal", "", "principal")
	f.StringVar(&sub.Environment, "env", "", "environment")
	f.StringVar(&sub.Model, "model", "", "model")
	f.StringVar(&sub.ApiKeyId, "key-id", "", "API key id")
	f.StringVar(&sub.TeamId, "team", "", "team (default: the principal's)")
	f.StringVar(&sub.Provider, "provider", "", "provider")
	f.StringVar(&limitsFile, "limits", "", "limits to read, in protobuf JSON, instead of the policy's")
	return c
}

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Anomaly alerts from the rate limiter's detector"}
	var principal, since string
	var limit int
	list := &cobra.Command{
		Use:   "list [--principal ID] [--since 24h|RFC3339] [--limit N]",
		Short: "List anomaly alerts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseTime(since, time.Now())
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acc := &ratelimitv1.ListAlertsResponse{}
			req := &ratelimitv1.ListAlertsRequest{PrincipalId: principal, Since: from, PageSize: int32(min(max(limit, 1), 1000))}
			if err := everyPage(ctx, a.ratelimit.ListAlerts, req, func(t string) { req.PageToken = t }, func(page *ratelimitv1.ListAlertsResponse) bool {
				acc.Alerts = append(acc.Alerts, page.GetAlerts()...)
				return limit <= 0 || len(acc.Alerts) < limit
			}); err != nil {
				return explain("list alerts", err)
			}
			if limit > 0 && len(acc.Alerts) > limit {
				acc.Alerts = acc.Alerts[:limit]
			}
			if a.json {
				return printJSON(out(cmd), acc)
			}
			t := newTable(out(cmd), "TIME", "KIND", "SUBJECT", "ENV", "METRIC", "VALUE", "BASELINE", "SCORE", "REASON")
			for _, al := range acc.GetAlerts() {
				t.row(ts(al.GetTime()), enumName(al.GetKind().String(), "ANOMALY_KIND_"), al.GetSubjectKind()+":"+al.GetSubjectId(), al.GetEnvironment(),
					al.GetMetric(), fmt.Sprintf("%.4g", al.GetValue()), fmt.Sprintf("%.4g±%.2g", al.GetBaselineMean(), al.GetBaselineStddev()),
					fmt.Sprintf("%.2f", al.GetScore()), al.GetReason())
			}
			return t.flush()
		},
	}
	list.Flags().StringVar(&principal, "principal", "", "only alerts about this principal")
	list.Flags().StringVar(&since, "since", "", "only alerts after this time (RFC 3339 or 24h, 7d back from now)")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many; 0 for all")
	cmd.AddCommand(list)
	return cmd
}
