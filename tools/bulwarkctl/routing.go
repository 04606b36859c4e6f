package main

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
)

// routes, providers and provider enable/disable (router).
func init() {
	register(newRoutesCmd)
	register(newProvidersCmd)
	register(newProviderCmd)
}

func newRoutesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "routes", Aliases: []string{"route"}, Short: "List and replace model routes"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List model aliases with their deployments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "list routes", func(ctx context.Context, a *api) (*routerv1.ListRoutesResponse, error) {
				return msg(a.router.ListRoutes(ctx, connect.NewRequest(&routerv1.ListRoutesRequest{})))
			}, func(m *routerv1.ListRoutesResponse) error {
				t := newTable(out(cmd), "ALIAS", "DEPLOYMENT", "PROVIDER", "MODEL", "WEIGHT", "PRIORITY", "ATTEMPTS", "FIRST BYTE", "TOTAL")
				for _, r := range m.GetRoutes() {
					for i, d := range r.GetDeployments() {
						alias, attempts, fb, total := r.GetAlias(), fmt.Sprint(r.GetMaxAttempts()), dur(r.GetFirstByteTimeout()), dur(r.GetTotalTimeout())
						if i > 0 {
							alias, attempts, fb, total = "", "", "", ""
						}
						t.row(alias, d.GetName(), d.GetProvider(), d.GetModel(), d.GetWeight(), d.GetPriority(), attempts, fb, total)
					}
				}
				return t.flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "put FILE",
		Short: "Create or replace a route from a JSON file (a bulwark.router.v1.Route; - reads stdin)",
		Long: `put FILE stores the route in FILE, a bulwark.router.v1.Route in protobuf JSON, e.g.

  {"alias": "gpt-4o", "max_attempts": 2, "total_timeout": "60s",
   "deployments": [{"name": "openai-gpt-4o", "provider": "openai", "model": "gpt-4o", "weight": 100}]}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := readDoc(cmd, args[0])
			if err != nil {
				return err
			}
			var route routerv1.Route
			if err := protojson.Unmarshal([]byte(doc), &route); err != nil {
				return fmt.Errorf("%s is not a route in protobuf JSON: %w", args[0], err)
			}
			return unary(cmd, "put route", func(ctx context.Context, a *api) (*routerv1.PutRouteResponse, error) {
				return msg(a.router.PutRoute(ctx, connect.NewRequest(&routerv1.PutRouteRequest{Route: &route})))
			}, func(m *routerv1.PutRouteResponse) error {
				fmt.Fprintf(out(cmd), "stored route %s (%d deployments)\n", m.GetRoute().GetAlias(), len(m.GetRoute().GetDeployments()))
				return nil
			})
		},
	})
	return cmd
}

func newProvidersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "providers", Short: "The provider (subprocessor) registry"}
	var env string
	list := &cobra.Command{
		Use:   "list [--env ENV]",
		Short: "List providers with routability, key availability and days until the SOC 2 report expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "list providers", func(ctx context.Context, a *api) (*routerv1.ListProvidersResponse, error) {
				return msg(a.router.ListProviders(ctx, connect.NewRequest(&routerv1.ListProvidersRequest{Environment: env})))
			}, func(m *routerv1.ListProvidersResponse) error {
				t := newTable(out(cmd), "NAME", "KIND", "ENABLED", "ROUTABLE", "KEY", "SOC2 DAYS", "DPA", "ZDR", "REGIONS", "VENDOR", "NOTE")
				for _, p := range m.GetProviders() {
					v := p.GetVendor()
					days := "-"
					if v.GetSoc2ReportExpiry() != nil {
						days = fmt.Sprint(p.GetDaysUntilReportExpiry())
						if p.GetDaysUntilReportExpiry() < 0 {
							days += " (expired)"
						}
					}
					t.row(p.GetName(), enumName(p.GetKind().String(), "PROVIDER_KIND_"), yesNo(p.GetEnabled()), yesNo(p.GetRoutable()),
						yesNo(p.GetKeyAvailable()), days, yesNo(v.GetDpaSigned()), yesNo(v.GetZeroDataRetention()), join(v.GetRegions()),
						v.GetLegalName(), p.GetUnroutableReason())
				}
				return t.flush()
			})
		},
	}
	list.Flags().StringVar(&env, "env", "", "environment whose provider keys to check")
	cmd.AddCommand(list)
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newProviderCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "provider", Short: "Take a provider out of routing, or back in (e.g. after a vendor breach)"}
	for _, enable := range []bool{false, true} {
		var reason string
		verb := map[bool]string{false: "disable", true: "enable"}[enable]
		short := map[bool]string{false: "Stop routing to a provider at once; calls fail over to other deployments",
			true: "Route to a provider again"}[enable]
		c := &cobra.Command{
			Use:   verb + " NAME --reason TEXT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if strings.TrimSpace(reason) == "" {
					return fmt.Errorf("--reason is required (it is recorded in the audit trail)")
				}
				a, err := newAPI(cmd)
				if err != nil {
					return err
				}
				ctx, cancel := a.ctx(cmd)
				defer cancel()
				res, err := a.router.SetProviderEnabled(ctx, connect.NewRequest(&routerv1.SetProviderEnabledRequest{Name: args[0], Enabled: enable, Reason: reason}))
				if err != nil {
					return explain(verb+" provider", err)
				}
				if a.json {
					return printJSON(out(cmd), res.Msg)
				}
				p := res.Msg.GetProvider()
				fmt.Fprintf(out(cmd), "provider %s: enabled=%s routable=%s %s\n", p.GetName(), yesNo(p.GetEnabled()), yesNo(p.GetRoutable()), p.GetUnroutableReason())
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit trail)")
		cmd.AddCommand(c)
	}
	return cmd
}
