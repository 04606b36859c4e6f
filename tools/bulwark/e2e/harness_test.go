// Package e2e drives a whole Bulwark — all-in-one (one process) and split (one
// process per service, via tools/devstack) — with the official OpenAI and
// Anthropic SDKs (Go, and the npm openai client), and checks what the
// provider simulator received, what the client got back, and that every call
// has exactly one audit record whose inclusion proof verifies.
package e2e_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/admin"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/auditproof"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// target is a running Bulwark under test.
type target struct {
	// URL is the gateway's; IdentityURL and AuditURL are those services' (all the same in all-in-one).
	URL         string
	IdentityURL string
	AuditURL    string
	AdminKey    string
	// Sim is the provider simulator every provider of the catalog points at.
	Sim *sim.Sim
	HC  *http.Client

	mu       sync.Mutex
	requests []call // every call made, for the audit check at the end
}

// call is one request the tests made and what its audit record must say.
type call struct {
	name      string
	requestID string
	decision  auditv1.Decision
}

func (tg *target) record(name, requestID string, d auditv1.Decision) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.requests = append(tg.requests, call{name: name, requestID: requestID, decision: d})
}

// The PII of the prompts: each value must never reach the provider, and must come back to the client.
var piiValues = []string{"Jane Doe", "jane.doe@example.com", "(415) 555-0132", "536-90-4399"}

const piiPrompt = "Please draft a reply to our customer.\nName: Jane Doe\nEmail: jane.doe@example.com\nPhone: (415) 555-0132\nSSN: 536-90-4399\nTell her the refund was approved."

// testPolicy is installed in the dev environment through the change workflow:
// apps may call LLMs, gpt-4o-mini and prompts named forbidden-* are denied, and
// principals named svc_e2e_budget* have a budget of one micro-dollar a day.
const testPolicy = `defaults:
  redaction_profile: default
  rate_limit_failure_mode: closed
  payload_retention: hash_only
  limits:
    - name: e2e-requests-per-minute
      kind: requests
      dimensions: [principal]
      limit: 100000
      period: 1m
      burst: 10000
providers:
  openai: {dpa: true, zero_retention: false, region: us}
  anthropic: {dpa: true, zero_retention: true, region: us}
  azure: {dpa: true, zero_retention: false, region: us}
data_classes:
  - class: "SECRET*"
    deny: true
rules:
  - name: apps-may-call-llms
    effect: allow
    roles: [app]
    actions: ["llm.*"]
  - name: no-mini-model
    effect: deny
    models: ["gpt-4o-mini"]
  - name: no-forbidden-prompts
    effect: deny
    prompts: ["forbidden-*"]
  - name: tiny-budget
    effect: allow
    principals: ["svc_e2e_budget*"]
    actions: ["llm.*"]
    limits:
      - name: e2e-tiny-budget
        kind: spend
        dimensions: [principal]
        limit: 1
        calendar_period: day
`

// keys are the principals the tests act as.
type keys struct {
	App    string // role app
	Budget string // spend budget of one micro-dollar
}

// setup installs testPolicy in dev (proposed by the admin, approved by a
// separate approver, promoted by the admin) and makes the test principals.
func (tg *target) setup(t *testing.T) keys {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := admin.New(tg.HC, tg.IdentityURL, tg.AdminKey)
	var k keys
	var err error
	if k.App, err = adm.Principal(ctx, "svc_e2e_app", "team_e2e", "dev", "app"); err != nil {
		t.Fatal(err)
	}
	if k.Budget, err = adm.Principal(ctx, "svc_e2e_budget", "team_e2e", "dev", "app"); err != nil {
		t.Fatal(err)
	}
	approverKey, err := adm.Principal(ctx, "usr_e2e_approver", "team_e2e", "dev", "approver")
	if err != nil {
		t.Fatal(err)
	}
	id, err := adm.ProposePolicy(ctx, "dev", testPolicy, "end-to-end test policy")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.New(tg.HC, tg.IdentityURL, approverKey).Approve(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := adm.Promote(ctx, id, "dev"); err != nil {
		t.Fatal(err)
	}
	// The gateway drops cached decisions on policy_changed; wait until the new policy answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := tg.openai(k.App).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("is the policy in force?")}})
		var apiErr *openai.Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden {
			tg.record("policy probe", apiErr.Response.Header.Get("x-request-id"), auditv1.Decision_DECISION_DENIED_POLICY)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test policy is not in force after 15s (last answer: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return k
}

func (tg *target) openai(key string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(tg.URL+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0), option.WithHTTPClient(tg.HC))
	return &c
}

func (tg *target) anthropic(key string) *anthropic.Client {
	c := anthropic.NewClient(aoption.WithBaseURL(tg.URL), aoption.WithAPIKey(key), aoption.WithMaxRetries(0), aoption.WithHTTPClient(tg.HC))
	return &c
}

// simSawNoPII checks that no PII value reached the provider in any request recorded since mark.
func (tg *target) simSawNoPII(t *testing.T, mark int) {
	t.Helper()
	reqs := tg.Sim.Requests()
	if len(reqs) <= mark {
		t.Fatalf("the simulator received nothing (had %d requests)", len(reqs))
	}
	for _, r := range reqs[mark:] {
		for _, v := range piiValues {
			if strings.Contains(string(r.Body), v) {
				t.Errorf("the provider received %q in %s %s", v, r.Method, r.Path)
			}
		}
		if !strings.Contains(string(r.Body), "⟨") {
			t.Errorf("the provider's request carries no placeholder: %s", r.Body)
		}
	}
}

// restored checks the client's answer: the simulator echoes the prompt it got
// (with placeholders), so a restored answer is the original prompt.
func restored(t *testing.T, answer string) {
	t.Helper()
	if answer != piiPrompt {
		t.Errorf("answer not restored:\n got %q\nwant %q", answer, piiPrompt)
	}
}

// runAllowedCalls makes streamed and non-streamed calls with PII through both Go SDKs.
func (tg *target) runAllowedCalls(t *testing.T, k keys) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("OpenAISDK_NonStreaming", func(t *testing.T) {
		mark := tg.Sim.RequestCount()
		var res *http.Response
		comp, err := tg.openai(k.App).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiPrompt)}}, option.WithResponseInto(&res))
		if err != nil {
			t.Fatal(err)
		}
		tg.record(t.Name(), res.Header.Get("x-request-id"), auditv1.Decision_DECISION_ALLOWED)
		tg.simSawNoPII(t, mark)
		restored(t, comp.Choices[0].Message.Content)
	})
	t.Run("OpenAISDK_Streaming", func(t *testing.T) {
		mark := tg.Sim.RequestCount()
		var res *http.Response
		stream := tg.openai(k.App).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(piiPrompt)},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}, option.WithResponseInto(&res))
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		tg.record(t.Name(), res.Header.Get("x-request-id"), auditv1.Decision_DECISION_ALLOWED)
		if chunks < 3 {
			t.Errorf("streamed in %d chunks, want several", chunks)
		}
		tg.simSawNoPII(t, mark)
		restored(t, acc.Choices[0].Message.Content)
		if acc.Usage.TotalTokens == 0 {
			t.Error("no usage in the stream")
		}
	})
	t.Run("AnthropicSDK_NonStreaming", func(t *testing.T) {
		mark := tg.Sim.RequestCount()
		var res *http.Response
		msg, err := tg.anthropic(k.App).Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 512,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(piiPrompt))}}, aoption.WithResponseInto(&res))
		if err != nil {
			t.Fatal(err)
		}
		tg.record(t.Name(), res.Header.Get("x-request-id"), auditv1.Decision_DECISION_ALLOWED)
		tg.simSawNoPII(t, mark)
		restored(t, msg.Content[0].Text)
	})
	t.Run("AnthropicSDK_Streaming", func(t *testing.T) {
		mark := tg.Sim.RequestCount()
		var res *http.Response
		stream := tg.anthropic(k.App).Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 512,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(piiPrompt))}}, aoption.WithResponseInto(&res))
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		tg.record(t.Name(), res.Header.Get("x-request-id"), auditv1.Decision_DECISION_ALLOWED)
		tg.simSawNoPII(t, mark)
		restored(t, msg.Content[0].Text)
	})
}

// openAIDenied asserts a refused OpenAI SDK call: status, error type and code.
func (tg *target) openAIDenied(t *testing.T, err error, status int, typ, code string, d auditv1.Decision) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error %d, got %v", status, err)
	}
	tg.record(t.Name(), apiErr.Response.Header.Get("x-request-id"), d)
	if apiErr.StatusCode != status || apiErr.Type != typ || apiErr.Code != code {
		t.Errorf("got %d type=%q code=%q (%s), want %d %q %q", apiErr.StatusCode, apiErr.Type, apiErr.Code, apiErr.RawJSON(), status, typ, code)
	}
	return apiErr
}

// anthropicDenied asserts a refused Anthropic SDK call: status and error type.
func (tg *target) anthropicDenied(t *testing.T, err error, status int, typ string, d auditv1.Decision) {
	t.Helper()
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error %d, got %v", status, err)
	}
	tg.record(t.Name(), apiErr.Response.Header.Get("x-request-id"), d)
	if apiErr.StatusCode != status || !strings.Contains(apiErr.RawJSON(), `"type":"`+typ+`"`) || !strings.Contains(apiErr.RawJSON(), `"type":"error"`) {
		t.Errorf("got %d %s, want %d with error type %q", apiErr.StatusCode, apiErr.RawJSON(), status, typ)
	}
}

// secretPrompt carries a provider key: redaction blocks it.
const secretPrompt = "deploy with this key: sk-proj-4fJ8dK2mQ9xLz7Tb1Vn6Wc3Ry5Hp0Ga8Ue2Si4Ok7Mj9Nl1Qw3Ex5Rt"

// runDeniedCalls checks the status and error shape of each kind of refusal.
func (tg *target) runDeniedCalls(t *testing.T, k keys) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}
	t.Run("DeniedModel_OpenAI_403", func(t *testing.T) {
		_, err := tg.openai(k.App).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: msgs})
		tg.openAIDenied(t, err, 403, "permission_error", "permission_denied", auditv1.Decision_DECISION_DENIED_POLICY)
	})
	t.Run("DeniedModel_OpenAI_Streaming_403", func(t *testing.T) {
		stream := tg.openai(k.App).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: msgs})
		for stream.Next() {
		}
		tg.openAIDenied(t, stream.Err(), 403, "permission_error", "permission_denied", auditv1.Decision_DECISION_DENIED_POLICY)
	})
	t.Run("ForbiddenPrompt_OpenAI_403", func(t *testing.T) {
		_, err := tg.openai(k.App).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: msgs},
			option.WithHeader("x-bulwark-prompt", "forbidden-bot@1"))
		tg.openAIDenied(t, err, 403, "permission_error", "permission_denied", auditv1.Decision_DECISION_DENIED_POLICY)
	})
	t.Run("ExceededBudget_OpenAI_429", func(t *testing.T) {
		_, err := tg.openai(k.Budget).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: msgs})
		apiErr := tg.openAIDenied(t, err, 429, "rate_limit_error", "rate_limit_exceeded", auditv1.Decision_DECISION_DENIED_RATE_LIMIT)
		if apiErr.Response.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	})
	t.Run("BlockedSecret_OpenAI_400", func(t *testing.T) {
		mark := tg.Sim.RequestCount()
		_, err := tg.openai(k.App).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(secretPrompt)}})
		tg.openAIDenied(t, err, 400, "invalid_request_error", "content_blocked", auditv1.Decision_DECISION_DENIED_REDACTION)
		if n := tg.Sim.RequestCount(); n != mark {
			t.Errorf("a blocked request reached the provider (%d new requests)", n-mark)
		}
	})
	t.Run("DeniedModel_Anthropic_403", func(t *testing.T) {
		_, err := tg.anthropic(k.App).Messages.New(ctx, anthropic.MessageNewParams{Model: "gpt-4o-mini", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		tg.anthropicDenied(t, err, 403, "permission_error", auditv1.Decision_DECISION_DENIED_POLICY)
	})
	t.Run("ExceededBudget_Anthropic_Streaming_429", func(t *testing.T) {
		stream := tg.anthropic(k.Budget).Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		for stream.Next() {
		}
		tg.anthropicDenied(t, stream.Err(), 429, "rate_limit_error", auditv1.Decision_DECISION_DENIED_RATE_LIMIT)
	})
	t.Run("BlockedSecret_Anthropic_400", func(t *testing.T) {
		_, err := tg.anthropic(k.App).Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(secretPrompt))}})
		tg.anthropicDenied(t, err, 400, "invalid_request_error", auditv1.Decision_DECISION_DENIED_REDACTION)
	})
}

// checkAudit waits until every call made has its record, then checks each has
// exactly one, with the expected decision, and that its inclusion proof verifies.
func (tg *target) checkAudit(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ac := auditproof.New(tg.HC, tg.AuditURL, tg.AdminKey)
	tg.mu.Lock()
	calls := append([]call(nil), tg.requests...)
	tg.mu.Unlock()
	if len(calls) == 0 {
		t.Fatal("no calls were made")
	}
	var recs [][]*auditv1.Record
	for _, c := range calls {
		if c.requestID == "" {
			t.Errorf("%s: no x-request-id", c.name)
			recs = append(recs, nil)
			continue
		}
		r, err := ac.WaitRecords(ctx, c.requestID, 1)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		recs = append(recs, r)
	}
	// Every record above was found, so the log has ingested past all of them:
	// counting again now catches any duplicate.
	for i, c := range calls {
		if c.requestID == "" {
			continue
		}
		r, err := ac.Records(ctx, c.requestID)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(r) != 1 {
			t.Errorf("%s (%s): %d audit records, want exactly 1", c.name, c.requestID, len(r))
			continue
		}
		if got := r[0].GetEvent().GetLlmCall().GetDecision(); got != c.decision {
			t.Errorf("%s: audit decision %s, want %s (reasons %v)", c.name, got, c.decision, r[0].GetEvent().GetLlmCall().GetReasons())
		}
		if _, err := ac.Verify(ctx, recs[i][0]); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	t.Logf("%d calls, each with exactly one audit record whose inclusion proof verifies", len(calls))
}
