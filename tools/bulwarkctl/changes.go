package main

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// changes: the approval workflow for prompts, policies and routes (identity).
func init() { register(newChangesCmd) }

const (
	changeKindPrefix  = "CHANGE_KIND_"
	changeStatePrefix = "CHANGE_STATE_"
)

func newChangesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "changes", Aliases: []string{"change"}, Short: "List, approve, reject, promote and document changes"}
	evidence := &cobra.Command{Use: "evidence", Short: "Attach evidence (test runs, tickets, staging results) to a change"}
	evidence.AddCommand(evidenceAddCmd())
	cmd.AddCommand(changesListCmd(), changesGetCmd(),
		changeActionCmd("approve", "Approve a change (the approver must not be its author)", func(a *api, cmd *cobra.Command, id, comment string) (*identityv1.Change, proto.Message, error) {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.ApproveChange(ctx, connect.NewRequest(&identityv1.ApproveChangeRequest{Id: id, Comment: comment}))
			if err != nil {
				return nil, nil, explain("approve change", err)
			}
			return res.Msg.GetChange(), res.Msg, nil
		}),
		changeActionCmd("reject", "Reject a change", func(a *api, cmd *cobra.Command, id, comment string) (*identityv1.Change, proto.Message, error) {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.RejectChange(ctx, connect.NewRequest(&identityv1.RejectChangeRequest{Id: id, Comment: comment}))
			if err != nil {
				return nil, nil, explain("reject change", err)
			}
			return res.Msg.GetChange(), res.Msg, nil
		}),
		changesPromoteCmd(), evidence, breakGlassCmd())
	return cmd
}

func changesListCmd() *cobra.Command {
	var state, kind string
	c := &cobra.Command{
		Use:   "list [--state S] [--kind K]",
		Short: "List changes, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := parseEnum(state, changeStatePrefix, identityv1.ChangeState_value)
			if err != nil {
				return fmt.Errorf("--state: %w", err)
			}
			k, err := parseEnum(kind, changeKindPrefix, identityv1.ChangeKind_value)
			if err != nil {
				return fmt.Errorf("--kind: %w", err)
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acc := &identityv1.ListChangesResponse{}
			req := &identityv1.ListChangesRequest{State: identityv1.ChangeState(st), Kind: identityv1.ChangeKind(k), PageSize: 1000}
			if err := everyPage(ctx, a.change.ListChanges, req, func(t string) { req.PageToken = t }, func(page *identityv1.ListChangesResponse) bool {
				acc.Changes = append(acc.Changes, page.GetChanges()...)
				return true
			}); err != nil {
				return explain("list changes", err)
			}
			if a.json {
				return printJSON(out(cmd), acc)
			}
			t := newTable(out(cmd), "ID", "KIND", "TARGET", "STATE", "AUTHOR", "APPROVER", "PROMOTED TO", "UPDATED", "DESCRIPTION")
			for _, ch := range acc.GetChanges() {
				t.row(ch.GetId(), enumName(ch.GetKind().String(), changeKindPrefix), ch.GetTarget(), enumName(ch.GetState().String(), changeStatePrefix),
					ch.GetAuthor(), ch.GetApprover(), join(ch.GetPromotedEnvironments()), ts(ch.GetUpdateTime()), ch.GetDescription())
			}
			return t.flush()
		},
	}
	c.Flags().StringVar(&state, "state", "", "proposed, approved, rejected, promoted or break_glass")
	c.Flags().StringVar(&kind, "kind", "", "prompt_version, policy_version, model_route or model_upgrade")
	return c
}

func changesGetCmd() *cobra.Command {
	var content bool
	c := &cobra.Command{
		Use:   "get ID [--content]",
		Short: "Show a change with its evidence and history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.GetChange(ctx, connect.NewRequest(&identityv1.GetChangeRequest{Id: args[0]}))
			if err != nil {
				return explain("get change", err)
			}
			if err := printChange(cmd, a.json, res.Msg.GetChange(), res.Msg); err != nil {
				return err
			}
			if content && !a.json {
				fmt.Fprintf(out(cmd), "\ncontent:\n%s\n", res.Msg.GetChange().GetContent())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&content, "content", false, "also print the proposed content")
	return c
}

type changeAction func(a *api, cmd *cobra.Command, id, comment string) (*identityv1.Change, proto.Message, error)

func changeActionCmd(name, short string, do changeAction) *cobra.Command {
	var comment string
	c := &cobra.Command{
		Use:   name + " ID [-m COMMENT]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ch, msg, err := do(a, cmd, args[0], comment)
			if err != nil {
				return err
			}
			return printChange(cmd, a.json, ch, msg)
		},
	}
	c.Flags().StringVarP(&comment, "comment", "m", "", "recorded in the change history")
	return c
}

func changesPromoteCmd() *cobra.Command {
	var env string
	c := &cobra.Command{
		Use:   "promote ID --env ENV",
		Short: "Apply an approved change to an environment (prod needs staging evidence first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.PromoteChange(ctx, connect.NewRequest(&identityv1.PromoteChangeRequest{Id: args[0], Environment: env}))
			if err != nil {
				return explain("promote change", err)
			}
			return printChange(cmd, a.json, res.Msg.GetChange(), res.Msg)
		},
	}
	c.Flags().StringVar(&env, "env", "", "environment to apply the change to (required)")
	_ = c.MarkFlagRequired("env")
	return c
}

func evidenceAddCmd() *cobra.Command {
	var kind, ref string
	c := &cobra.Command{
		Use:   "add ID --kind K --ref REFERENCE",
		Short: "Attach evidence to a change, e.g. --kind staging_test --ref https://ci/run/123",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.AttachEvidence(ctx, connect.NewRequest(&identityv1.AttachEvidenceRequest{Id: args[0],
				Evidence: &identityv1.Evidence{Kind: kind, Reference: ref}}))
			if err != nil {
				return explain("attach evidence", err)
			}
			return printChange(cmd, a.json, res.Msg.GetChange(), res.Msg)
		},
	}
	c.Flags().StringVar(&kind, "kind", "", "kind of evidence, e.g. staging_test, ticket, eval (required)")
	c.Flags().StringVar(&ref, "ref", "", "where it is: a URL, a run id (required)")
	_ = c.MarkFlagRequired("kind")
	_ = c.MarkFlagRequired("ref")
	return c
}

func breakGlassCmd() *cobra.Command {
	var kind, target, env, justification, description string
	c := &cobra.Command{
		Use:   "break-glass FILE --kind K --target T --env ENV --justification TEXT",
		Short: "Apply a change at once without approval (needs change.break_glass and MFA; loudly audited)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := parseEnum(kind, changeKindPrefix, identityv1.ChangeKind_value)
			if err != nil || k == 0 {
				return fmt.Errorf("--kind: want prompt_version, policy_version, model_route or model_upgrade")
			}
			doc, err := readDoc(cmd, args[0])
			if err != nil {
				return err
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.BreakGlass(ctx, connect.NewRequest(&identityv1.BreakGlassRequest{
				Change:      &identityv1.ProposeChangeRequest{Kind: identityv1.ChangeKind(k), Target: target, Content: doc, Description: description},
				Environment: env, Justification: justification}))
			if err != nil {
				return explain("break glass", err)
			}
			return printChange(cmd, a.json, res.Msg.GetChange(), res.Msg)
		},
	}
	c.Flags().StringVar(&kind, "kind", "", "prompt_version, policy_version, model_route or model_upgrade (required)")
	c.Flags().StringVar(&target, "target", "", "what the change applies to: a prompt id, an environment, a model alias (required)")
	c.Flags().StringVar(&env, "env", "", "environment to apply it in (required)")
	c.Flags().StringVar(&justification, "justification", "", "why approval could not wait (required; recorded in the audit trail)")
	c.Flags().StringVarP(&description, "description", "m", "", "what the change does")
	for _, f := range []string{"kind", "target", "env", "justification"} {
		_ = c.MarkFlagRequired(f)
	}
	return c
}
