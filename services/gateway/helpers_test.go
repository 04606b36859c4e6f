package gateway_test

// Test services. Identity and router had no public package to mount when these
// tests were written, so the tests serve small implementations of their
// generated Connect handlers (identity: a key and policy table; router: a relay
// to the real provider simulator) over real HTTP/2 servers and reach them
// through the generated clients, as the gateway does in split mode. Redaction,
// ratelimit, the audit service, NATS, Redis, Vault and the simulator are the
// real ones.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
)

// h2cServer runs h on a loopback HTTP/1.1+h2c server that the test can stop.
func h2cServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Start()
	return srv
}

type testKey struct {
	principal string
	team      string
	env       string
	limit     int64 // requests per minute
	budget    int64 // tokens per day
	strict    bool
	failOpen  bool
}

// testIdentity authenticates keys from a table and decides with a fixed policy:
// denied models and unregistered prompts are refused; registered prompts
// resolve to their content.
type testIdentity struct {
	identityv1connect.UnimplementedIdentityServiceHandler
	identityv1connect.UnimplementedPolicyServiceHandler
	mu            sync.Mutex
	keys          map[string]testKey
	deniedModels  []string
	prompts       map[string]string
	authorizeHits int
	version       string
}

func (s *testIdentity) Authenticate(_ context.Context, req *connect.Request[identityv1.AuthenticateRequest]) (*connect.Response[identityv1.AuthenticateResponse], error) {
	s.mu.Lock()
	k, ok := s.keys[req.Msg.GetCredential()]
	s.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("unknown key"))
	}
	return connect.NewResponse(&identityv1.AuthenticateResponse{
		Principal: &identityv1.Principal{Id: k.principal, TeamId: k.team, Roles: []string{"app"}, Environments: []string{k.env}},
		Method:    identityv1.AuthMethod_AUTH_METHOD_API_KEY, ApiKeyId: "key-" + k.principal, Environment: k.env,
	}), nil
}

func (s *testIdentity) key(principal string) testKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.principal == principal {
			return k
		}
	}
	return testKey{}
}

func (s *testIdentity) Authorize(_ context.Context, req *connect.Request[identityv1.AuthorizeRequest]) (*connect.Response[identityv1.AuthorizeResponse], error) {
	s.mu.Lock()
	s.authorizeHits++
	version := s.version
	s.mu.Unlock()
	k := s.key(req.Msg.GetPrincipalId())
	res := req.Msg.GetResource()
	deny := func(reason string) (*connect.Response[identityv1.AuthorizeResponse], error) {
		return connect.NewResponse(&identityv1.AuthorizeResponse{Allowed: false, Reasons: []string{reason}, PolicyVersion: version}), nil
	}
	if slices.Contains(s.deniedModels, res.GetModel()) {
		return deny(fmt.Sprintf("model %q is not allowed", res.GetModel()))
	}
	for _, c := range res.GetDataClasses() {
		if strings.HasPrefix(c, "SECRET") {
			return deny("secrets may go to no provider")
		}
	}
	ob := &identityv1.Obligations{RedactionProfile: "default", StrictAudit: k.strict,
		RateLimitFailureMode: identityv1.FailureMode_FAILURE_MODE_CLOSED}
	if k.failOpen {
		ob.RateLimitFailureMode = identityv1.FailureMode_FAILURE_MODE_OPEN
	}
	if ref := res.GetPromptRef(); ref != "" {
		content, ok := s.prompts[ref]
		if !ok {
			return deny(fmt.Sprintf("prompt %q is not promoted in %q", ref, res.GetEnvironment()))
		}
		ob.SystemPrompt, ob.PromptVersion = content, ref
	}
	if k.limit > 0 {
		ob.Limits = append(ob.Limits, &ratelimitv1.LimitSpec{Name: "requests-per-minute", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS,
			Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_PRINCIPAL}, Limit: k.limit, Burst: k.limit, Period: durationpb.New(time.Minute)})
	}
	if k.budget > 0 {
		ob.Limits = append(ob.Limits, &ratelimitv1.LimitSpec{Name: "daily-token-budget", Kind: ratelimitv1.LimitKind_LIMIT_KIND_TOKENS,
			Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_PRINCIPAL}, Limit: k.budget, Period: durationpb.New(24 * time.Hour)})
	}
	return connect.NewResponse(&identityv1.AuthorizeResponse{Allowed: true, Reasons: []string{"test policy allows"}, PolicyVersion: version, Obligations: ob}), nil
}

// testRouter relays calls to the provider simulator in the call's own format.
type testRouter struct {
	routerv1connect.UnimplementedRouterServiceHandler
	simURL string
	models []string
	hc     *http.Client
}

func (r *testRouter) post(ctx context.Context, call *routerv1.Call, path string) (*http.Response, error) {
	var model struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(call.GetBody(), &model); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("body is not JSON"))
	}
	if !slices.Contains(r.models, model.Model) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no route for %q", model.Model))
	}
	if call.GetFormat() == routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES {
		path = "/v1/messages"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, r.simURL+path, bytes.NewReader(call.GetBody()))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if call.GetFormat() == routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES {
		hreq.Header.Set("x-api-key", "sk-ant-provider-key")
		hreq.Header.Set("anthropic-version", "2023-06-01")
	} else {
		hreq.Header.Set("Authorization", "Bearer sk-provider-key")
	}
	res, err := r.hc.Do(hreq)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("provider unreachable"))
	}
	return res, nil
}

func usageOf(body []byte) *routerv1.Usage {
	var u struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
			InputTokens      int64 `json:"input_tokens"`
			OutputTokens     int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(body, &u) != nil {
		return nil
	}
	return &routerv1.Usage{InputTokens: u.Usage.PromptTokens + u.Usage.InputTokens, OutputTokens: u.Usage.CompletionTokens + u.Usage.OutputTokens}
}

func (r *testRouter) Complete(ctx context.Context, req *connect.Request[routerv1.CompleteRequest]) (*connect.Response[routerv1.CompleteResponse], error) {
	res, err := r.post(ctx, req.Msg.GetCall(), "/v1/chat/completions")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return connect.NewResponse(&routerv1.CompleteResponse{Status: int32(res.StatusCode), Body: body, Provider: "simulator",
		ModelServed: "sim-model", Usage: usageOf(body), Attempts: 1}), nil
}

func (r *testRouter) Embed(ctx context.Context, req *connect.Request[routerv1.EmbedRequest]) (*connect.Response[routerv1.EmbedResponse], error) {
	res, err := r.post(ctx, &routerv1.Call{Body: req.Msg.GetBody(), Format: routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT}, "/v1/embeddings")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return connect.NewResponse(&routerv1.EmbedResponse{Status: int32(res.StatusCode), Body: body, Provider: "simulator", Usage: usageOf(body)}), nil
}

func (r *testRouter) ListModels(context.Context, *connect.Request[routerv1.ListModelsRequest]) (*connect.Response[routerv1.ListModelsResponse], error) {
	out := &routerv1.ListModelsResponse{}
	for _, m := range r.models {
		out.Models = append(out.Models, &routerv1.Model{Id: m, OwnedBy: "simulator"})
	}
	return connect.NewResponse(out), nil
}

// StreamComplete relays the simulator's server-sent events one by one.
func (r *testRouter) StreamComplete(ctx context.Context, req *connect.Request[routerv1.StreamCompleteRequest], stream *connect.ServerStream[routerv1.StreamCompleteResponse]) error {
	res, err := r.post(ctx, req.Msg.GetCall(), "/v1/chat/completions")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		return stream.Send(&routerv1.StreamCompleteResponse{Status: int32(res.StatusCode), Data: body, Provider: "simulator"})
	}
	first := true
	var usage *routerv1.Usage
	sc := bufio.NewScanner(res.Body)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := []byte(strings.TrimPrefix(line, "data: "))
			if u := usageOf(data); u != nil && (u.InputTokens > 0 || u.OutputTokens > 0) {
				if usage == nil {
					usage = u
				} else {
					usage.OutputTokens = max(usage.OutputTokens, u.OutputTokens)
					usage.InputTokens = max(usage.InputTokens, u.InputTokens)
				}
			}
			var m struct {
				Message struct {
					Usage struct {
						InputTokens int64 `json:"input_tokens"`
					} `json:"usage"`
				} `json:"message"`
			}
			if json.Unmarshal(data, &m) == nil && m.Message.Usage.InputTokens > 0 {
				if usage == nil {
					usage = &routerv1.Usage{}
				}
				usage.InputTokens = m.Message.Usage.InputTokens
			}
			msg := &routerv1.StreamCompleteResponse{Event: event, Data: data}
			if first {
				msg.Status, msg.Provider, msg.ModelServed = 200, "simulator", "sim-model"
				first = false
			}
			if string(data) == "[DONE]" || event == "message_stop" {
				msg.Usage = usage
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return connect.NewError(connect.CodeUnavailable, errors.New("provider stream broke off"))
	}
	return nil
}
