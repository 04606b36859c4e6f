package main

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// principals and roles (identity).
func init() {
	register(newPrincipalsCmd)
	register(newRolesCmd)
}

func newPrincipalsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "principals", Aliases: []string{"principal"}, Short: "Create, list, read and disable principals"}
	cmd.AddCommand(principalsCreateCmd(), principalsListCmd(), principalsGetCmd(), principalsDisableCmd())
	return cmd
}

const kindPrefix = "PRINCIPAL_KIND_"

func principalKind(s string) (identityv1.PrincipalKind, error) {
	v, err := parseEnum(s, kindPrefix, identityv1.PrincipalKind_value)
	return identityv1.PrincipalKind(v), err
}

func printPrincipals(cmd *cobra.Command, ps []*identityv1.Principal) error {
	t := newTable(out(cmd), "ID", "KIND", "NAME", "TEAM", "ROLES", "ENVIRONMENTS", "STATUS", "CREATED")
	for _, p := range ps {
		status := "active"
		if p.GetDisabled() {
			status = "disabled"
		}
		t.row(p.GetId(), enumName(p.GetKind().String(), kindPrefix), p.GetDisplayName(), p.GetTeamId(), join(p.GetRoles()),
			join(p.GetEnvironments()), status, ts(p.GetCreateTime()))
	}
	return t.flush()
}

func printPrincipal(cmd *cobra.Command, p *identityv1.Principal) error {
	status := "active"
	if p.GetDisabled() {
		status = "disabled"
	}
	return kv(out(cmd), "id", p.GetId(), "kind", enumName(p.GetKind().String(), kindPrefix), "display name", p.GetDisplayName(),
		"email", p.GetEmail(), "team", p.GetTeamId(), "roles", join(p.GetRoles()), "environments", join(p.GetEnvironments()),
		"oidc subject", p.GetOidcSubject(), "status", status, "created", ts(p.GetCreateTime()), "updated", ts(p.GetUpdateTime()))
}

func principalsCreateCmd() *cobra.Command {
	var p identityv1.Principal
	var kind string
	c := &cobra.Command{
		Use:   "create [ID] --kind service|person|team --role R... --env E... [--team T] [--name N] [--email E]",
		Short: "Create a principal (an id is assigned when none is given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := principalKind(kind)
			if err != nil {
				return fmt.Errorf("--kind: %w", err)
			}
			p.Kind = k
			if len(args) == 1 {
				p.Id = args[0]
			}
			return unary(cmd, "create principal", func(ctx context.Context, a *api) (*identityv1.CreatePrincipalResponse, error) {
				return msg(a.identity.CreatePrincipal(ctx, connect.NewRequest(&identityv1.CreatePrincipalRequest{Principal: &p})))
			}, func(m *identityv1.CreatePrincipalResponse) error {
				return printPrincipal(cmd, m.GetPrincipal())
			})
		},
	}
	c.Flags().StringVar(&kind, "kind", "service", "service, person or team")
	c.Flags().StringVar(&p.DisplayName, "name", "", "display name")
	c.Flags().StringVar(&p.Email, "email", "", "email of a person")
	c.Flags().StringVar(&p.TeamId, "team", "", "team the principal belongs to")
	c.Flags().StringSliceVar(&p.Roles, "role", nil, "role (repeatable): admin, approver, developer, viewer, app or a custom role")
	c.Flags().StringSliceVar(&p.Environments, "env", nil, "environment the principal may act in (repeatable)")
	c.Flags().StringVar(&p.OidcSubject, "oidc-subject", "", `link a person to an OIDC identity, "issuer|sub"`)
	_ = c.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"service", "person", "team"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func principalsListCmd() *cobra.Command {
	var kind, team string
	c := &cobra.Command{
		Use:   "list [--kind K] [--team T]",
		Short: "List principals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := principalKind(kind)
			if err != nil {
				return fmt.Errorf("--kind: %w", err)
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acc := &identityv1.ListPrincipalsResponse{}
			req := &identityv1.ListPrincipalsRequest{Kind: k, TeamId: team, PageSize: 1000}
			if err := everyPage(ctx, a.identity.ListPrincipals, req, func(t string) { req.PageToken = t }, func(page *identityv1.ListPrincipalsResponse) bool {
				acc.Principals = append(acc.Principals, page.GetPrincipals()...)
				return true
			}); err != nil {
				return explain("list principals", err)
			}
			if a.json {
				return printJSON(out(cmd), acc)
			}
			return printPrincipals(cmd, acc.Principals)
		},
	}
	c.Flags().StringVar(&kind, "kind", "", "only this kind: service, person or team")
	c.Flags().StringVar(&team, "team", "", "only members of this team")
	return c
}

func principalsGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one principal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(cmd, "get principal", func(ctx context.Context, a *api) (*identityv1.GetPrincipalResponse, error) {
				return msg(a.identity.GetPrincipal(ctx, connect.NewRequest(&identityv1.GetPrincipalRequest{Id: args[0]})))
			}, func(m *identityv1.GetPrincipalResponse) error {
				return printPrincipal(cmd, m.GetPrincipal())
			})
		},
	}
}

func principalsDisableCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "disable ID --reason TEXT",
		Short: "Disable a principal; its keys stop working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(cmd, "disable principal", func(ctx context.Context, a *api) (*identityv1.DisablePrincipalResponse, error) {
				return msg(a.identity.DisablePrincipal(ctx, connect.NewRequest(&identityv1.DisablePrincipalRequest{Id: args[0], Reason: reason})))
			}, func(m *identityv1.DisablePrincipalResponse) error {
				fmt.Fprintf(out(cmd), "disabled %s\n", m.GetPrincipal().GetId())
				return nil
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "recorded in the audit trail")
	return c
}

func newRolesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "roles", Short: "List roles and their permissions"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List built-in and custom roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "list roles", func(ctx context.Context, a *api) (*identityv1.ListRolesResponse, error) {
				return msg(a.identity.ListRoles(ctx, connect.NewRequest(&identityv1.ListRolesRequest{})))
			}, func(m *identityv1.ListRolesResponse) error {
				t := newTable(out(cmd), "NAME", "BUILT-IN", "PERMISSIONS", "DESCRIPTION")
				for _, r := range m.GetRoles() {
					t.row(r.GetName(), r.GetBuiltIn(), join(r.GetPermissions()), r.GetDescription())
				}
				return t.flush()
			})
		},
	})
	return cmd
}
