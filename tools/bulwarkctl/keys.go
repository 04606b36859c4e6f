package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"connectrpc.com/connect"
	vault "github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
)

// keys: Bulwark API keys (identity) and, with --provider, provider keys in Vault.
func init() { register(newKeysCmd) }

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create, list, revoke and rotate API keys; rotate provider keys in Vault"}
	cmd.AddCommand(keysCreateCmd(), keysListCmd(), keysRevokeCmd(), keysRotateCmd())
	return cmd
}

func printKeys(cmd *cobra.Command, ks []*identityv1.ApiKey) error {
	t := newTable(out(cmd), "ID", "PRINCIPAL", "ENV", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATUS")
	for _, k := range ks {
		t.row(k.GetId(), k.GetPrincipalId(), k.GetEnvironment(), k.GetName(), k.GetPrefix(), ts(k.GetCreateTime()),
			ts(k.GetExpireTime()), ts(k.GetLastUseTime()), keyStatus(k, time.Now()))
	}
	return t.flush()
}

func keyStatus(k *identityv1.ApiKey, now time.Time) string {
	switch {
	case k.GetRevokeTime() != nil:
		return "revoked"
	case k.GetExpireTime() != nil && !k.GetExpireTime().AsTime().After(now):
		return "expired"
	case k.GetRotatedTo() != "":
		return "rotating to " + k.GetRotatedTo()
	}
	return "active"
}

func keysCreateCmd() *cobra.Command {
	var principal, env, name string
	var scopes []string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "create --principal ID --env ENV [--name N] [--scope S]... [--ttl D]",
		Short: "Issue an API key; its secret is printed once and never again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(cmd, "create key", func(ctx context.Context, a *api) (*identityv1.CreateApiKeyResponse, error) {
				return msg(a.identity.CreateApiKey(ctx, connect.NewRequest(&identityv1.CreateApiKeyRequest{
					PrincipalId: principal, Environment: env, Name: name, Scopes: scopes, TtlSeconds: int64(ttl / time.Second)})))
			}, func(m *identityv1.CreateApiKeyResponse) error {
				k := m.GetApiKey()
				if err := kv(out(cmd), "id", k.GetId(), "principal", k.GetPrincipalId(), "environment", k.GetEnvironment(),
					"name", k.GetName(), "expires", ts(k.GetExpireTime())); err != nil {
					return err
				}
				fmt.Fprintf(out(cmd), "\nsecret (shown once, store it now):\n\n  %s\n", m.GetSecret())
				return nil
			})
		},
	}
	c.Flags().StringVar(&principal, "principal", "", "principal that owns the key (required)")
	c.Flags().StringVar(&env, "env", "", "environment the key works in (required)")
	c.Flags().StringVar(&name, "name", "", "label")
	c.Flags().StringSliceVar(&scopes, "scope", nil, "narrow the key to these actions, e.g. llm.complete (repeatable)")
	c.Flags().DurationVar(&ttl, "ttl", 0, "expiry after this long; 0 means none")
	_ = c.MarkFlagRequired("principal")
	_ = c.MarkFlagRequired("env")
	return c
}

func keysListCmd() *cobra.Command {
	var principal, env string
	var all bool
	c := &cobra.Command{
		Use:   "list [--principal ID] [--env ENV] [--all]",
		Short: "List API keys (metadata only, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newAPI(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			acc := &identityv1.ListApiKeysResponse{}
			req := &identityv1.ListApiKeysRequest{PrincipalId: principal, Environment: env, IncludeRevoked: all, PageSize: 1000}
			if err := everyPage(ctx, a.identity.ListApiKeys, req, func(t string) { req.PageToken = t }, func(page *identityv1.ListApiKeysResponse) bool {
				acc.ApiKeys = append(acc.ApiKeys, page.GetApiKeys()...)
				return true
			}); err != nil {
				return explain("list keys", err)
			}
			if a.json {
				return printJSON(out(cmd), acc)
			}
			return printKeys(cmd, acc.ApiKeys)
		},
	}
	c.Flags().StringVar(&principal, "principal", "", "only this principal's keys")
	c.Flags().StringVar(&env, "env", "", "only keys of this environment")
	c.Flags().BoolVar(&all, "all", false, "include revoked keys")
	return c
}

func keysRevokeCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "revoke KEY_ID --reason TEXT",
		Short: "Revoke an API key; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(cmd, "revoke key", func(ctx context.Context, a *api) (*identityv1.RevokeApiKeyResponse, error) {
				return msg(a.identity.RevokeApiKey(ctx, connect.NewRequest(&identityv1.RevokeApiKeyRequest{Id: args[0], Reason: reason})))
			}, func(m *identityv1.RevokeApiKeyResponse) error {
				fmt.Fprintf(out(cmd), "revoked %s at %s\n", m.GetApiKey().GetId(), ts(m.GetApiKey().GetRevokeTime()))
				return nil
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "recorded in the audit trail")
	return c
}

type providerRotation struct {
	provider, env, fromFile, mount, prefix, field string
}

func keysRotateCmd() *cobra.Command {
	var grace time.Duration
	var pr providerRotation
	c := &cobra.Command{
		Use:   "rotate KEY_ID [--grace D] | rotate --provider NAME --env ENV [--from-file F]",
		Short: "Rotate an API key (new secret printed once), or a provider key in Vault",
		Long: `rotate KEY_ID issues a successor of a Bulwark API key and prints its secret once; the old key
keeps working for --grace (default 24h, as configured in identity).

rotate --provider NAME --env ENV writes a new version of the provider's key to Vault KV v2 at
<mount>/<prefix><env>/providers/<NAME> (default secret/bulwark/<env>/providers/<NAME>), reading the
new key from --from-file or stdin; it is never echoed. Other fields of the secret are kept. The
router uses the new version within its key cache TTL (BULWARK_ROUTER_KEY_TTL, 15 s by default)
without a restart. Needs VAULT_ADDR and VAULT_TOKEN with write access to that path.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if pr.provider != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if pr.provider != "" {
				return rotateProviderKey(cmd, pr)
			}
			return unary(cmd, "rotate key", func(ctx context.Context, a *api) (*identityv1.RotateApiKeyResponse, error) {
				return msg(a.identity.RotateApiKey(ctx, connect.NewRequest(&identityv1.RotateApiKeyRequest{Id: args[0], GraceSeconds: int64(grace / time.Second)})))
			}, func(m *identityv1.RotateApiKeyResponse) error {
				old, nk := m.GetOldApiKey(), m.GetNewApiKey()
				if err := kv(out(cmd), "new id", nk.GetId(), "environment", nk.GetEnvironment(), "old id", old.GetId(), "old key stops", ts(old.GetExpireTime())); err != nil {
					return err
				}
				fmt.Fprintf(out(cmd), "\nsecret (shown once, store it now):\n\n  %s\n", m.GetSecret())
				return nil
			})
		},
	}
	c.Flags().DurationVar(&grace, "grace", 0, "how long the old key keeps working; 0 means identity's default")
	c.Flags().StringVar(&pr.provider, "provider", "", "rotate this provider's key in Vault instead of a Bulwark key")
	c.Flags().StringVar(&pr.env, "env", "", "environment of the provider key (with --provider)")
	c.Flags().StringVar(&pr.fromFile, "from-file", "", "read the new provider key from this file instead of stdin")
	c.Flags().StringVar(&pr.mount, "vault-mount", "secret", "KV v2 mount of provider keys")
	c.Flags().StringVar(&pr.prefix, "vault-prefix", "bulwark/", "path before <env>/providers/<name> (BULWARK_ROUTER_KEY_PATH_PREFIX)")
	c.Flags().StringVar(&pr.field, "field", "api_key", "secret field that holds the key")
	return c
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// errEmptyKey is returned when no new provider key was read.
	errEmptyKey = errors.New("no provider key read (give it on stdin or with --from-file)")
)

// rotateProviderKey writes a new KV v2 version of a provider key. The key is
// read from a file or stdin and never printed.
func rotateProviderKey(cmd *cobra.Command, pr providerRotation) error {
	if !nameRE.MatchString(pr.provider) {
		return fmt.Errorf("provider name %q is not a valid name", pr.provider)
	}
	if !nameRE.MatchString(pr.env) {
		return errors.New("--env is required with --provider (e.g. --env prod)")
	}
	var r io.Reader = cmd.InOrStdin()
	if pr.fromFile != "" && pr.fromFile != "-" {
		f, err := os.Open(pr.fromFile)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var secret string
	if f, ok := r.(*os.File); ok && pr.fromFile == "" && isTerminal(f) {
		// Interactive: read without echo, like a password prompt.
		fmt.Fprintf(cmd.ErrOrStderr(), "new %s key for %s (input hidden): ", pr.provider, pr.env)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		if secret = strings.TrimSpace(string(b)); secret == "" {
			return errEmptyKey
		}
	} else {
		var err error
		if secret, err = readSecret(r); err != nil {
			return err
		}
	}
	if os.Getenv("VAULT_ADDR") == "" {
		return errors.New("VAULT_ADDR is not set (and VAULT_TOKEN with write access to the provider key path)")
	}
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return fmt.Errorf("vault config: %w", cfg.Error)
	}
	vc, err := vault.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("vault client: %w", err)
	}
	timeout, _ := cmd.Flags().GetDuration(flagTimeout)
	ctx, cancel := context.WithTimeout(cmd.Context(), max(timeout, time.Second))
	defer cancel()
	version, err := writeProviderKey(ctx, vc, pr, secret)
	if err != nil {
		return err
	}
	path := pr.mount + "/" + pr.prefix + pr.env + "/providers/" + pr.provider
	jsonOut, _ := cmd.Flags().GetBool(flagJSON)
	if jsonOut {
		b, err := jsonMarshalIndent(struct {
			Provider    string `json:"provider"`
			Environment string `json:"environment"`
			Path        string `json:"path"`
			Version     int    `json:"version"`
		}{pr.provider, pr.env, path, version})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out(cmd), "%s\n", b)
		return err
	}
	fmt.Fprintf(out(cmd), "wrote version %d of %s; the router uses it within its key cache TTL, no restart needed\n", version, path)
	return nil
}

// writeProviderKey keeps the secret's other fields and writes with
// check-and-set so a concurrent rotation is not silently overwritten.
func writeProviderKey(ctx context.Context, vc *vault.Client, pr providerRotation, secret string) (int, error) {
	kvc := vc.KVv2(pr.mount)
	path := pr.prefix + pr.env + "/providers/" + pr.provider
	data := map[string]any{}
	cas := 0
	cur, err := kvc.Get(ctx, path)
	switch {
	case err == nil:
		for k, v := range cur.Data {
			data[k] = v
		}
		if cur.VersionMetadata != nil {
			cas = cur.VersionMetadata.Version
		}
	case errors.Is(err, vault.ErrSecretNotFound):
	default:
		return 0, fmt.Errorf("read %s/%s: %s", pr.mount, path, vaultMessage(err))
	}
	if old, _ := data[pr.field].(string); old == secret {
		return 0, errors.New("the new key is the same as the current one")
	}
	data[pr.field] = secret
	sec, err := kvc.Put(ctx, path, data, vault.WithCheckAndSet(cas))
	if err != nil {
		return 0, fmt.Errorf("write %s/%s: %s", pr.mount, path, vaultMessage(err))
	}
	if sec == nil || sec.VersionMetadata == nil {
		return 0, nil
	}
	return sec.VersionMetadata.Version, nil
}

// vaultMessage keeps Vault's status and errors but drops the request dump.
func vaultMessage(err error) string {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("vault answered %d: %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return err.Error()
}

func readSecret(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, 64<<10))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return "", errEmptyKey
	}
	return s, nil
}
