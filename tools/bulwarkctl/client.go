package main

// Global flags and the clients of the admin commands. Every service's Connect
// handler is mounted on one port by the all-in-one binary and behind the
// gateway's base URL in a split deployment's ingress; per-service URLs
// override the base for a split deployment reached service by service.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// Global flag names.
const (
	flagURL          = "url"
	flagKey          = "key"
	flagJSON         = "json"
	flagGRPC         = "grpc"
	flagTimeout      = "timeout"
	flagIdentityURL  = "identity-url"
	flagRatelimitURL = "ratelimit-url"
	flagRouterURL    = "router-url"
	flagAuditURL     = "audit-url"
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func init() {
	rootHooks = append(rootHooks, func(root *cobra.Command) {
		pf := root.PersistentFlags()
		pf.String(flagURL, envOr("BULWARK_URL", "http://localhost:8080"), "base URL of the all-in-one Bulwark or the gateway (env BULWARK_URL)")
		pf.String(flagKey, "", "API key or OIDC token, sent as Authorization: Bearer (env BULWARK_KEY)")
		pf.Bool(flagJSON, false, "print JSON (protobuf JSON names) instead of tables")
		pf.Bool(flagGRPC, false, "use the gRPC protocol instead of Connect (needs HTTP/2)")
		pf.Duration(flagTimeout, 30*time.Second, "deadline of each call")
		pf.String(flagIdentityURL, os.Getenv("BULWARK_IDENTITY_URL"), "identity service URL in a split deployment (default --url; env BULWARK_IDENTITY_URL)")
		pf.String(flagRatelimitURL, os.Getenv("BULWARK_RATELIMIT_URL"), "ratelimit service URL in a split deployment (default --url; env BULWARK_RATELIMIT_URL)")
		pf.String(flagRouterURL, os.Getenv("BULWARK_ROUTER_URL"), "router service URL in a split deployment (default --url; env BULWARK_ROUTER_URL)")
		pf.String(flagAuditURL, "", "audit service URL in a split deployment (default --url; env BULWARK_AUDIT_URL for audit query)")
		root.CompletionOptions.HiddenDefaultCmd = false
	})
}

// api holds the generated clients for one command invocation.
type api struct {
	identity  identityv1connect.IdentityServiceClient
	policy    identityv1connect.PolicyServiceClient
	prompt    identityv1connect.PromptServiceClient
	change    identityv1connect.ChangeServiceClient
	ratelimit ratelimitv1connect.RateLimitServiceClient
	router    routerv1connect.RouterServiceClient
	audit     auditv1connect.AuditServiceClient
	json      bool
	timeout   time.Duration
}

// errNoKey is returned when a command needs a credential and none was given.
var errNoKey = errors.New("no credential: pass --key or set BULWARK_KEY")

func flagString(cmd *cobra.Command, name string) string {
	v, _ := cmd.Flags().GetString(name)
	return v
}

// newAPI builds the clients from the global flags of cmd.
func newAPI(cmd *cobra.Command) (*api, error) {
	base := strings.TrimRight(flagString(cmd, flagURL), "/")
	key := flagString(cmd, flagKey)
	if key == "" {
		key = os.Getenv("BULWARK_KEY")
	}
	if key == "" {
		return nil, errNoKey
	}
	jsonOut, _ := cmd.Flags().GetBool(flagJSON)
	grpc, _ := cmd.Flags().GetBool(flagGRPC)
	timeout, _ := cmd.Flags().GetDuration(flagTimeout)
	opts := []connect.ClientOption{connect.WithInterceptors(bearer(key))}
	if grpc {
		opts = append(opts, connect.WithGRPC())
	}
	url := func(flag, env string) string {
		if v := flagString(cmd, flag); v != "" {
			return strings.TrimRight(v, "/")
		}
		if env != "" && os.Getenv(env) != "" {
			return strings.TrimRight(os.Getenv(env), "/")
		}
		return base
	}
	hc := platform.HTTPClient()
	idURL := url(flagIdentityURL, "")
	return &api{
		identity:  identityv1connect.NewIdentityServiceClient(hc, idURL, opts...),
		policy:    identityv1connect.NewPolicyServiceClient(hc, idURL, opts...),
		prompt:    identityv1connect.NewPromptServiceClient(hc, idURL, opts...),
		change:    identityv1connect.NewChangeServiceClient(hc, idURL, opts...),
		ratelimit: ratelimitv1connect.NewRateLimitServiceClient(hc, url(flagRatelimitURL, ""), opts...),
		router:    routerv1connect.NewRouterServiceClient(hc, url(flagRouterURL, ""), opts...),
		audit:     auditv1connect.NewAuditServiceClient(hc, url(flagAuditURL, "BULWARK_AUDIT_URL"), opts...),
		json:      jsonOut,
		timeout:   timeout,
	}, nil
}

// ctx bounds one call.
func (a *api) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	if a.timeout <= 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, a.timeout)
}

// bearer sends the credential on every call.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// explain turns a Connect error into a message for people: the code, the
// server's message, and a hint for the usual causes.
func explain(op string, err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", op, err)
	}
	hint := ""
	switch ce.Code() {
	case connect.CodeUnauthenticated:
		hint = " (check --key / BULWARK_KEY)"
	case connect.CodePermissionDenied:
		hint = " (the key's principal lacks the permission, the environment, or a second factor)"
	case connect.CodeUnavailable:
		hint = " (is the service running at --url?)"
	case connect.CodeUnimplemented:
		hint = " (this service is not mounted at that URL; use the per-service --*-url flags in a split deployment)"
	}
	return fmt.Errorf("%s: %s: %s%s", op, ce.Code(), ce.Message(), hint)
}

// unary runs one call for cmd: it builds the clients from the global flags,
// bounds the call by --timeout, explains a failure as op ("get principal"),
// and prints the answer: as JSON with --json, otherwise with show.
func unary[M proto.Message](cmd *cobra.Command, op string, call func(ctx context.Context, a *api) (M, error), show func(M) error) error {
	a, err := newAPI(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	m, err := call(ctx, a)
	if err != nil {
		return explain(op, err)
	}
	if a.json {
		return printJSON(out(cmd), m)
	}
	return show(m)
}

// msg is a call's message, for unary: msg(a.identity.GetPrincipal(ctx, req)).
func msg[T any](res *connect.Response[T], err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// everyPage calls list with req, then again with each next-page token an
// answer carries (setToken puts it on req), and hands every answer to keep,
// until an answer carries no token or keep returns false. req is left with
// the token of the first page not read, "" when every page was.
func everyPage[Req, Res any, PRes interface {
	*Res
	GetNextPageToken() string
}](ctx context.Context, list func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error), req *Req,
	setToken func(string), keep func(PRes) bool) error {
	for {
		res, err := list(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		page := PRes(res.Msg)
		token := page.GetNextPageToken()
		setToken(token)
		if !keep(page) || token == "" {
			return nil
		}
	}
}
