package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// policies and prompts (identity); changes to either go through the change
// workflow (changes.go).
func init() {
	register(newPoliciesCmd)
	register(newPromptsCmd)
}

// readDoc reads FILE, or stdin for "-".
func readDoc(cmd *cobra.Command, name string) (string, error) {
	var r io.Reader = cmd.InOrStdin()
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", fmt.Errorf("%s is empty", name)
	}
	return string(b), nil
}

func newPoliciesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policies", Aliases: []string{"policy"}, Short: "Read, validate and propose policy documents"}
	cmd.AddCommand(policiesGetCmd(), policiesVersionsCmd(), policiesValidateCmd(), policiesProposeCmd())
	return cmd
}

func policiesGetCmd() *cobra.Command {
	var env, version string
	c := &cobra.Command{
		Use:   "get --env ENV [--version V]",
		Short: "Print the policy document in force in an environment (or one version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "get policy", func(ctx context.Context, a *api) (*identityv1.GetPolicyResponse, error) {
				return msg(a.policy.GetPolicy(ctx, connect.NewRequest(&identityv1.GetPolicyRequest{Environment: env, Version: version})))
			}, func(m *identityv1.GetPolicyResponse) error {
				p := m.GetPolicy()
				fmt.Fprintf(cmd.ErrOrStderr(), "# %s version %s (sha256 %s, by %s, approved by %s, change %s)\n", p.GetEnvironment(), p.GetVersion(),
					p.GetContentHash(), p.GetAuthor(), p.GetApprover(), p.GetChangeId())
				_, err := io.WriteString(out(cmd), p.GetDocument())
				return err
			})
		},
	}
	c.Flags().StringVar(&env, "env", "", "environment (required)")
	c.Flags().StringVar(&version, "version", "", "a past version instead of the one in force")
	_ = c.MarkFlagRequired("env")
	return c
}

func policiesVersionsCmd() *cobra.Command {
	var env string
	c := &cobra.Command{
		Use:   "versions --env ENV",
		Short: "List an environment's policy versions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "list policy versions", func(ctx context.Context, a *api) (*identityv1.ListPolicyVersionsResponse, error) {
				return msg(a.policy.ListPolicyVersions(ctx, connect.NewRequest(&identityv1.ListPolicyVersionsRequest{Environment: env})))
			}, func(m *identityv1.ListPolicyVersionsResponse) error {
				t := newTable(out(cmd), "VERSION", "ENV", "SHA256", "AUTHOR", "APPROVER", "CHANGE", "CREATED")
				for _, v := range m.GetVersions() {
					t.row(v.GetVersion(), v.GetEnvironment(), short(v.GetContentHash(), 12), v.GetAuthor(), v.GetApprover(), v.GetChangeId(), ts(v.GetCreateTime()))
				}
				return t.flush()
			})
		},
	}
	c.Flags().StringVar(&env, "env", "", "environment (required)")
	_ = c.MarkFlagRequired("env")
	return c
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errInvalid makes "policies validate" exit 1 after printing the problems.
var errInvalid = exitError{code: 1}

func policiesValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a policy document without storing it (exit status 1 when invalid)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			res, err := a.policy.ValidatePolicy(ctx, connect.NewRequest(&identityv1.ValidatePolicyRequest{Document: doc}))
			if err != nil {
				return explain("validate policy", err)
			}
			if a.json {
				err = printJSON(out(cmd), res.Msg)
			} else if res.Msg.GetValid() {
				fmt.Fprintf(out(cmd), "%s: valid (sha256 %s)\n", args[0], res.Msg.GetContentHash())
			} else {
				fmt.Fprintf(out(cmd), "%s: INVALID\n", args[0])
				for _, p := range res.Msg.GetProblems() {
					fmt.Fprintf(out(cmd), "  - %s\n", p)
				}
			}
			if err == nil && !res.Msg.GetValid() {
				return errInvalid
			}
			return err
		},
	}
}

func printChange(cmd *cobra.Command, jsonOut bool, ch *identityv1.Change, msg proto.Message) error {
	if jsonOut {
		return printJSON(out(cmd), msg)
	}
	if err := kv(out(cmd), "id", ch.GetId(), "kind", enumName(ch.GetKind().String(), changeKindPrefix), "target", ch.GetTarget(),
		"state", enumName(ch.GetState().String(), changeStatePrefix), "author", ch.GetAuthor(), "approver", ch.GetApprover(),
		"description", ch.GetDescription(), "before", short(ch.GetBeforeHash(), 12), "after", short(ch.GetAfterHash(), 12),
		"promoted to", join(ch.GetPromotedEnvironments()), "result version", ch.GetResultVersion(),
		"created", ts(ch.GetCreateTime()), "updated", ts(ch.GetUpdateTime())); err != nil {
		return err
	}
	if len(ch.GetEvidence()) > 0 {
		fmt.Fprintln(out(cmd), "\nevidence:")
		t := newTable(out(cmd), "  KIND", "REFERENCE", "ADDED BY", "TIME")
		for _, e := range ch.GetEvidence() {
			t.row("  "+e.GetKind(), e.GetReference(), e.GetAddedBy(), ts(e.GetAddTime()))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(ch.GetHistory()) > 0 {
		fmt.Fprintln(out(cmd), "\nhistory:")
		t := newTable(out(cmd), "  TIME", "ACTION", "ACTOR", "COMMENT")
		for _, s := range ch.GetHistory() {
			t.row("  "+ts(s.GetTime()), s.GetAction(), s.GetActor(), s.GetComment())
		}
		return t.flush()
	}
	return nil
}

func proposeCmd(use, short string, kind identityv1.ChangeKind, targetFlag string) *cobra.Command {
	var target, description string
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[len(args)-1]
			if len(args) == 2 {
				target = args[0]
			}
			if target == "" {
				return fmt.Errorf("--%s is required", targetFlag)
			}
			doc, err := readDoc(cmd, file)
			if err != nil {
				return err
			}
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			res, err := a.change.ProposeChange(ctx, connect.NewRequest(&identityv1.ProposeChangeRequest{Kind: kind, Target: target, Content: doc, Description: description}))
			if err != nil {
				return explain("propose change", err)
			}
			if !a.json {
				fmt.Fprintf(out(cmd), "proposed change %s; next: bulwarkctl changes approve %s (by someone else)\n\n", res.Msg.GetChange().GetId(), res.Msg.GetChange().GetId())
			}
			return printChange(cmd, a.json, res.Msg.GetChange(), res.Msg)
		},
	}
	c.Flags().StringVar(&target, targetFlag, "", "what the change applies to")
	c.Flags().StringVarP(&description, "description", "m", "", "why (shown to the approver)")
	return c
}

func policiesProposeCmd() *cobra.Command {
	return proposeCmd("propose FILE --env ENV [-m WHY]", "Propose a policy document for an environment (goes through approval)",
		identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, "env")
}

func newPromptsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "prompts", Aliases: []string{"prompt"}, Short: "Read and propose system prompts"}
	cmd.AddCommand(promptsListCmd(), promptsGetCmd(), promptsVersionsCmd(),
		proposeCmd("propose PROMPT_ID FILE [-m WHY]", "Propose a new version of a prompt (goes through approval)",
			identityv1.ChangeKind_CHANGE_KIND_PROMPT_VERSION, "prompt"))
	return cmd
}

func promptsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List prompts with their latest and promoted versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acc := &identityv1.ListPromptsResponse{}
			req := &identityv1.ListPromptsRequest{PageSize: 1000}
			if err := everyPage(ctx, a.prompt.ListPrompts, req, func(t string) { req.PageToken = t }, func(page *identityv1.ListPromptsResponse) bool {
				acc.Prompts = append(acc.Prompts, page.GetPrompts()...)
				return true
			}); err != nil {
				return explain("list prompts", err)
			}
			if a.json {
				return printJSON(out(cmd), acc)
			}
			t := newTable(out(cmd), "ID", "LATEST", "PROMOTED", "DESCRIPTION")
			for _, p := range acc.GetPrompts() {
				var promoted []string
				for _, env := range sortStrings(keys(p.GetPromoted())) {
					promoted = append(promoted, fmt.Sprintf("%s=%d", env, p.GetPromoted()[env]))
				}
				t.row(p.GetId(), p.GetLatestVersion(), join(promoted), p.GetDescription())
			}
			return t.flush()
		},
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func promptsGetCmd() *cobra.Command {
	var env string
	c := &cobra.Command{
		Use:   "get REF [--env ENV]",
		Short: `Print a prompt: "support-bot@7" for a version, "support-bot" for the one promoted in --env`,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(cmd, "get prompt", func(ctx context.Context, a *api) (*identityv1.GetPromptResponse, error) {
				return msg(a.prompt.GetPrompt(ctx, connect.NewRequest(&identityv1.GetPromptRequest{Ref: args[0], Environment: env})))
			}, func(m *identityv1.GetPromptResponse) error {
				p := m.GetPrompt()
				fmt.Fprintf(cmd.ErrOrStderr(), "# %s@%d (sha256 %s, by %s, change %s, promoted in %s)\n", p.GetPromptId(), p.GetVersion(),
					short(p.GetContentHash(), 12), p.GetAuthor(), p.GetChangeId(), join(p.GetPromotedEnvironments()))
				_, err := io.WriteString(out(cmd), p.GetContent())
				return err
			})
		},
	}
	c.Flags().StringVar(&env, "env", "", "environment whose promoted version to print when REF has no @version")
	return c
}

func promptsVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions PROMPT_ID",
		Short: "List a prompt's versions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(cmd, "list prompt versions", func(ctx context.Context, a *api) (*identityv1.ListPromptVersionsResponse, error) {
				return msg(a.prompt.ListPromptVersions(ctx, connect.NewRequest(&identityv1.ListPromptVersionsRequest{PromptId: args[0]})))
			}, func(m *identityv1.ListPromptVersionsResponse) error {
				t := newTable(out(cmd), "VERSION", "SHA256", "AUTHOR", "CHANGE", "PROMOTED IN", "CREATED")
				for _, v := range m.GetVersions() {
					t.row(v.GetVersion(), short(v.GetContentHash(), 12), v.GetAuthor(), v.GetChangeId(), join(v.GetPromotedEnvironments()), ts(v.GetCreateTime()))
				}
				return t.flush()
			})
		},
	}
}
