// Package demo is `bulwark demo`: a scripted tour against a running Bulwark.
// It creates an application key, sends a prompt full of PII through the
// official OpenAI Go SDK, and shows what the provider received, what the
// client got back, the audit record and its verified inclusion proof.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/admin"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/allinone"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/auditproof"
)

// Config says where the instance is.
type Config struct {
	// URL of the running Bulwark (BULWARK_URL, default http://localhost:8080).
	URL string
	// AdminKey (BULWARK_ADMIN_KEY, else BULWARK_BOOTSTRAP_ADMIN_KEY).
	AdminKey string
	// Environment the demo key works in (default dev).
	Environment string
	// Model to call (default gpt-4o).
	Model string
}

// ConfigFromEnv reads Config from the environment.
func ConfigFromEnv() Config {
	c := Config{URL: os.Getenv("BULWARK_URL"), AdminKey: os.Getenv("BULWARK_ADMIN_KEY"), Environment: "dev", Model: "gpt-4o"}
	if c.URL == "" {
		c.URL = "http://localhost:8080"
	}
	if c.AdminKey == "" {
		c.AdminKey = os.Getenv("BULWARK_BOOTSTRAP_ADMIN_KEY")
	}
	return c
}

// Prompt is the demo's prompt: every line carries personal data or a secret-free identifier the redaction engine knows.
const Prompt = `Please draft a short reply to our customer.
Name: Jane Doe
Email: jane.doe@example.com
Phone: (415) 555-0132
SSN: 536-90-4399
Tell her that her refund was approved.`

// Result is what the tour observed.
type Result struct {
	RequestID        string
	ProviderReceived string
	Answer           string
	Verified         auditproof.Verified
}

// Run runs the tour and prints it to out.
func Run(ctx context.Context, c Config, out io.Writer) error {
	if c.AdminKey == "" {
		return errors.New("set BULWARK_ADMIN_KEY to the admin key `make run` printed (or start it with BULWARK_BOOTSTRAP_ADMIN_KEY)")
	}
	_, err := Tour(ctx, c, out)
	return err
}

// Tour runs the tour and returns what it observed.
func Tour(ctx context.Context, c Config, out io.Writer) (Result, error) {
	var res Result
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	step := func(n int, title string) { fmt.Fprintf(out, "\n── %d. %s ──\n", n, title) }

	step(1, "Create an application key (as the admin)")
	adm := admin.New(hc, c.URL, c.AdminKey)
	app := fmt.Sprintf("svc_demo_%d", time.Now().Unix())
	key, err := adm.Principal(ctx, app, "team_demo", c.Environment, "app")
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "principal %s (role app, team team_demo), key %s…\n", app, key[:min(len(key), 20)])

	// Forget earlier simulator traffic so the tour shows only its own call.
	simURL := c.URL + allinone.SimRequestsPath
	if r, err := http.NewRequestWithContext(ctx, http.MethodDelete, simURL, nil); err == nil {
		if resp, err := hc.Do(r); err == nil {
			resp.Body.Close()
		}
	}

	step(2, "Send a prompt full of PII through the official OpenAI Go SDK")
	fmt.Fprintf(out, "base URL %s/v1, model %s, prompt:\n%s\n", c.URL, c.Model, indent(Prompt))
	client := openai.NewClient(option.WithBaseURL(c.URL+"/v1"), option.WithAPIKey(key), option.WithHTTPClient(hc), option.WithMaxRetries(0))
	var httpRes *http.Response
	comp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    openai.ChatModel(c.Model),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(Prompt)},
	}, option.WithResponseInto(&httpRes))
	if err != nil {
		return res, fmt.Errorf("chat completion: %w", err)
	}
	res.RequestID = httpRes.Header.Get("x-request-id")
	fmt.Fprintf(out, "request id %s\n", res.RequestID)

	step(3, "What the provider received")
	got, err := providerReceived(ctx, hc, simURL)
	switch {
	case err != nil:
		fmt.Fprintf(out, "(not available: %v; the provider is not the built-in simulator)\n", err)
	default:
		res.ProviderReceived = got
		fmt.Fprintln(out, indent(got))
	}

	step(4, "What the client got back")
	if len(comp.Choices) > 0 {
		res.Answer = comp.Choices[0].Message.Content
	}
	fmt.Fprintln(out, indent(res.Answer))
	fmt.Fprintf(out, "usage: %d prompt + %d completion tokens\n", comp.Usage.PromptTokens, comp.Usage.CompletionTokens)

	step(5, "The audit record and its verified inclusion proof")
	ac := auditproof.New(hc, c.URL, c.AdminKey)
	recs, err := ac.WaitRecords(ctx, res.RequestID, 1)
	if err != nil {
		return res, err
	}
	v, err := ac.Verify(ctx, recs[0])
	if err != nil {
		return res, err
	}
	res.Verified = v
	ev := v.Record.GetEvent()
	call := ev.GetLlmCall()
	pretty, _ := json.MarshalIndent(map[string]any{
		"event_id": ev.GetEventId(), "time": ev.GetTime().AsTime(), "environment": ev.GetEnvironment(),
		"principal_id": call.GetPrincipalId(), "api": call.GetApi(), "model_requested": call.GetModelRequested(),
		"model_served": call.GetModelServed(), "provider": call.GetProvider(), "decision": call.GetDecision().String(),
		"findings": call.GetFindings(), "data_classes": call.GetDataClasses(), "request_hmac": call.GetRequestHmac(),
		"response_hmac": call.GetResponseHmac(), "input_tokens": call.GetInputTokens(), "output_tokens": call.GetOutputTokens(),
		"cost_micros": call.GetCostMicros(),
	}, "", "  ")
	fmt.Fprintln(out, indent(string(pretty)))
	fmt.Fprintf(out, "leaf %d in a tree of %d; checkpoint signed by %s\n", v.Record.GetIndex(), v.Checkpoint.Size, strings.SplitN(v.VerifierKey, "+", 2)[0])
	fmt.Fprintf(out, "inclusion proof: %d hashes from the leaf to root %x… — VERIFIED (signature, leaf hash, RFC 6962 path)\n", v.ProofLen, v.Checkpoint.Root[:8])
	fmt.Fprintln(out, "\nThe provider never saw the personal data; the application got it back; the call is in a tamper-evident log.")
	return res, nil
}

// providerReceived returns the messages of the simulator's last chat request.
func providerReceived(ctx context.Context, hc *http.Client, url string) (string, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(r)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	var reqs []allinone.SimRequest
	if err := json.NewDecoder(resp.Body).Decode(&reqs); err != nil {
		return "", err
	}
	if len(reqs) == 0 {
		return "", errors.New("the simulator recorded nothing")
	}
	last := reqs[len(reqs)-1]
	var body struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(last.Body, &body); err != nil || len(body.Messages) == 0 {
		return string(last.Body), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", last.Method, last.Path)
	for _, m := range body.Messages {
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			s = string(m.Content)
		}
		fmt.Fprintf(&b, "[%s] %s\n", m.Role, s)
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
