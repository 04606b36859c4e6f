package routing_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func textOf(evs []routing.StreamEvent, anthropic bool) string {
	var b strings.Builder
	for _, ev := range evs {
		if anthropic {
			b.WriteString(gjson.GetBytes(ev.Data, "delta.text").Str)
		} else if string(ev.Data) != "[DONE]" {
			b.WriteString(gjson.GetBytes(ev.Data, "choices.0.delta.content").Str)
		}
	}
	return b.String()
}

func TestStream_SameFormatRelaysEventsWithHeadAndUsageOnTheLast(t *testing.T) {
	e := newEnv(t)
	var c collected
	sum, err := e.router.Stream(context.Background(), chat("gpt", "one two three"), c.emit)
	if err != nil {
		t.Fatal(err)
	}
	if c.heads != 1 || c.events[0].Head == nil || c.events[0].Head.Provider != "oa" || c.events[0].Head.Status != 200 {
		t.Fatalf("head: %+v", c.events[0])
	}
	last := c.events[len(c.events)-1]
	if string(last.Data) != "[DONE]" || last.Usage == nil || last.Usage.Output != 3 || last.Usage.Input != 3 {
		t.Fatalf("last %q usage %+v", last.Data, last.Usage)
	}
	if got := textOf(c.events, false); got != "one two three" {
		t.Fatalf("text %q", got)
	}
	for _, ev := range c.events {
		if strings.Contains(string(ev.Data), `"choices":[]`) {
			t.Fatal("relayed the usage chunk the caller did not ask for")
		}
	}
	sent := e.sims["oa"].Requests()[0].Body
	if !gjson.GetBytes(sent, "stream").Bool() || !gjson.GetBytes(sent, "stream_options.include_usage").Bool() {
		t.Fatalf("sent %s", sent)
	}
	if sum.Usage.Output != 3 || sum.Provider != "oa" {
		t.Fatalf("summary %+v", sum)
	}
}

func TestStream_CallerAskingForUsageGetsTheUsageChunk(t *testing.T) {
	e := newEnv(t)
	call := chat("gpt", "")
	call.Body = oaBody("gpt", "a b", `,"stream":true,"stream_options":{"include_usage":true}`)
	var c collected
	if _, err := e.router.Stream(context.Background(), call, c.emit); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range c.events {
		if gjson.GetBytes(ev.Data, "usage.completion_tokens").Int() == 2 {
			found = true
		}
	}
	if !found {
		t.Fatal("usage chunk missing")
	}
}

func TestStream_OpenAICallerOnAnthropicProvider(t *testing.T) {
	e := newEnv(t)
	call := chat("claude", "")
	call.Body = oaBody("claude", "stream from claude", `,"stream":true,"stream_options":{"include_usage":true}`)
	var c collected
	sum, err := e.router.Stream(context.Background(), call, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	if got := textOf(c.events, false); got != "stream from claude" {
		t.Fatalf("text %q", got)
	}
	n := len(c.events)
	if string(c.events[n-1].Data) != "[DONE]" || gjson.GetBytes(c.events[n-2].Data, "usage.completion_tokens").Int() != 3 {
		t.Fatalf("tail %q %q", c.events[n-2].Data, c.events[n-1].Data)
	}
	for _, ev := range c.events {
		if ev.Name != "" {
			t.Fatalf("OpenAI stream carries event name %q", ev.Name)
		}
	}
	if sum.Usage.Input != 3 || sum.Usage.Output != 3 {
		t.Fatalf("usage %+v", sum.Usage)
	}
}

func TestStream_AnthropicCallerOnOpenAIProvider(t *testing.T) {
	e := newEnv(t)
	call := routing.Call{Environment: "dev", Format: routing.FormatAnthropicMessages, Body: anBody("gpt", "stream from gpt", `,"stream":true`)}
	var c collected
	sum, err := e.router.Stream(context.Background(), call, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ev := range c.events {
		names = append(names, ev.Name)
	}
	want := "message_start content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want {
		t.Fatalf("events %v", names)
	}
	if textOf(c.events, true) != "stream from gpt" || sum.Usage.Output != 3 || c.events[len(c.events)-1].Usage.Output != 3 {
		t.Fatalf("text %q usage %+v", textOf(c.events, true), sum.Usage)
	}
}

func TestStream_NoRetryAfterTheFirstEvent(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{MidStream: 2})
	var c collected
	_, err := e.router.Stream(context.Background(), chat("fallback", "a b c d e f"), c.emit)
	if !errors.Is(err, routing.ErrStreamBroken) {
		t.Fatalf("err = %v", err)
	}
	if len(c.events) != 2 || e.sims["oa"].RequestCount() != 1 || e.sims["an"].RequestCount() != 0 {
		t.Fatalf("events=%d oa=%d an=%d", len(c.events), e.sims["oa"].RequestCount(), e.sims["an"].RequestCount())
	}
}

func TestStream_RetriesBeforeTheFirstEvent(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Status: 429, RetryAfter: "1"}, sim.Fault{Reset: true})
	var c collected
	sum, err := e.router.Stream(context.Background(), chat("gpt", "ok now"), c.emit)
	if err != nil || sum.Attempts != 3 || textOf(c.events, false) != "ok now" {
		t.Fatalf("%v %+v", err, sum)
	}
}

func TestStream_FirstByteTimeoutFallsBack(t *testing.T) {
	e := newEnv(t)
	e.sims["oa"].Inject(sim.Fault{Latency: 2 * time.Second})
	call := chat("fallback", "slow")
	call.FirstByteTimeout = 100 * time.Millisecond
	var c collected
	start := time.Now()
	sum, err := e.router.Stream(context.Background(), call, c.emit)
	if err != nil || sum.Provider != "an" {
		t.Fatalf("%v %+v", err, sum)
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatal("waited for the slow provider")
	}
}

func TestStream_NonRetryableErrorIsOneEventInTheCallersFormat(t *testing.T) {
	e := newEnv(t)
	e.sims["an"].Inject(sim.Fault{Status: 400, Message: "nope"})
	var c collected
	sum, err := e.router.Stream(context.Background(), chat("claude", "x"), c.emit)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != 400 || len(c.events) != 1 || gjson.GetBytes(c.events[0].Data, "error.message").Str != "nope" || c.events[0].Head.Status != 400 {
		t.Fatalf("sum %+v events %q", sum, c.events[0].Data)
	}
}

func TestStream_AnthropicSameFormatCarriesEventNamesAndUsage(t *testing.T) {
	e := newEnv(t)
	call := routing.Call{Environment: "dev", Format: routing.FormatAnthropicMessages, Body: anBody("claude", "hi there", "")}
	var c collected
	sum, err := e.router.Stream(context.Background(), call, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	if c.events[0].Name != "message_start" || c.events[len(c.events)-1].Name != "message_stop" || sum.Usage.Output != 2 || sum.Usage.Input != 2 {
		t.Fatalf("first %s last %s usage %+v", c.events[0].Name, c.events[len(c.events)-1].Name, sum.Usage)
	}
	if !gjson.GetBytes(e.sims["an"].Requests()[0].Body, "stream").Bool() {
		t.Fatal("stream not set for the provider")
	}
}
