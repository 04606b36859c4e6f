// Command bench is Bulwark's load tool: an open-loop, fixed-rate generator of
// OpenAI-style POST /v1/chat/completions calls that measures the gateway's
// latency percentiles, its added latency over calling the provider simulator
// directly (both measured side by side in one run), and the highest rate held
// with p99 under an objective.
//
//	go run ./tools/bench --target allinone --rate 1000 --duration 20s [--stream] [--search] [--json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bulwarkhq/bulwark/tools/bench/internal/chat"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/gwmetrics"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/load"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/procstat"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/report"
	"github.com/bulwarkhq/bulwark/tools/bench/internal/targets"
)

// defaultPrompt is a realistic support prompt carrying PII the redaction profile replaces.
const defaultPrompt = `Please draft a short reply to our customer about her refund.
Name: Jane Doe
Email: jane.doe@example.com
Phone: (415) 555-0132
SSN: 536-90-4399
Order 88213 was returned on March 3 and the refund of $42.10 was approved today.
Keep it friendly and under 80 words.`

type config struct {
	target, url, key, directURL string
	rate                        float64
	duration, warmup, timeout   time.Duration
	slices                      int
	stream, jsonOut, noDirect   bool
	promptFile, model           string
	maxInFlight                 int
	search                      bool
	searchStart, searchMax      float64
	searchStep, searchBudget    time.Duration
	slo                         time.Duration
	vaultAddr, vaultToken       string
	natsURL, redisAddr          string
	verbose                     bool
}

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.target, "target", "allinone", "allinone | split | url")
	fs.StringVar(&c.url, "url", "", "gateway base URL for --target url (loopback only)")
	fs.StringVar(&c.key, "key", "", "API key the gateway accepts, for --target url")
	fs.StringVar(&c.directURL, "direct-url", "", "provider simulator base URL for --target url (added latency needs it)")
	fs.Float64Var(&c.rate, "rate", 1000, "requests per second, per side")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measured time per side")
	fs.IntVar(&c.slices, "slices", 4, "the duration is split into this many alternating direct/gateway slices")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured warm-up per side")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.BoolVar(&c.stream, "stream", false, "stream the answers (reports time to first token too)")
	fs.StringVar(&c.promptFile, "prompt-file", "", "user prompt (default: a support prompt with PII)")
	fs.StringVar(&c.model, "model", "gpt-4o", "model")
	fs.BoolVar(&c.noDirect, "no-direct", false, "skip the direct-to-simulator side")
	fs.IntVar(&c.maxInFlight, "max-inflight", 10000, "requests pending at once before new ones are dropped (counted as errors)")
	fs.BoolVar(&c.search, "search", false, "also search the highest gateway rate held with p99 < --slo")
	fs.Float64Var(&c.searchStart, "search-start", 250, "first rate of the search")
	fs.Float64Var(&c.searchMax, "search-max", 16000, "highest rate the search tries")
	fs.DurationVar(&c.searchStep, "search-step", 3*time.Second, "time each search rate is held")
	fs.DurationVar(&c.searchBudget, "search-budget", 60*time.Second, "time bound of the whole search")
	fs.DurationVar(&c.slo, "slo", 50*time.Millisecond, "p99 objective of the search")
	fs.StringVar(&c.vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault for --target split (default: a dev server from bin/vault)")
	fs.StringVar(&c.vaultToken, "vault-token", os.Getenv("VAULT_TOKEN"), "token for --vault-addr")
	fs.StringVar(&c.natsURL, "nats-url", "", "NATS with JetStream for --target split (default: a private nats-server per run)")
	fs.StringVar(&c.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis for --target allinone and split (a fresh key prefix per run)")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of a table")
	fs.BoolVar(&c.verbose, "v", false, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.rate <= 0 || c.rate > 100000:
		return c, errors.New("--rate must be in (0, 100000]")
	case c.duration <= 0 || c.duration > time.Hour:
		return c, errors.New("--duration must be in (0, 1h]")
	case c.slices < 1:
		return c, errors.New("--slices must be at least 1")
	case c.searchBudget > 30*time.Minute:
		return c, errors.New("--search-budget is at most 30m")
	}
	for _, u := range []string{c.url, c.directURL, c.vaultAddr} {
		if u != "" {
			if err := chat.CheckLoopback(u); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := parse(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	var logOut io.Writer = io.Discard
	if c.verbose {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	if err := run(ctx, c, log, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger, out io.Writer) error {
	prompt := defaultPrompt
	if c.promptFile != "" {
		b, err := os.ReadFile(c.promptFile)
		if err != nil {
			return err
		}
		prompt = string(b)
	}
	body, err := chat.Body(c.model, prompt, c.stream)
	if err != nil {
		return err
	}
	tg, err := targets.Start(ctx, targets.Options{Kind: c.target, URL: c.url, Key: c.key, DirectURL: c.directURL,
		VaultAddr: c.vaultAddr, VaultToken: c.vaultToken, NATSURL: c.natsURL, RedisAddr: c.redisAddr, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := tg.Stop(); err != nil {
			log.Warn("stopping the target", "err", err)
		}
	}()
	for _, u := range []string{tg.GatewayURL, tg.DirectURL} {
		if u != "" {
			if err := chat.CheckLoopback(u); err != nil {
				return err
			}
		}
	}
	hc := chat.NewHTTPClient()
	gw := &chat.Client{HC: hc, URL: tg.GatewayURL + "/v1/chat/completions", Key: tg.Key, Body: body, Stream: c.stream}
	var direct *chat.Client
	if tg.DirectURL != "" && !c.noDirect {
		direct = &chat.Client{HC: chat.NewHTTPClient(), URL: tg.DirectURL + "/v1/chat/completions", Key: tg.DirectKey, Body: body, Stream: c.stream}
	}
	res := &report.Result{Target: tg.Kind, Stream: c.stream, Rate: c.rate, Duration: c.duration.String(), Slices: c.slices,
		Model: c.model, PromptByte: len(prompt), Started: time.Now().UTC(), Notes: tg.Notes}
	if err := preflight(ctx, tg, gw, body, prompt, res); err != nil {
		return err
	}

	plan := func(d time.Duration, rate float64) load.Plan {
		return load.Plan{Rate: rate, Duration: d, Timeout: c.timeout, MaxInFlight: c.maxInFlight}
	}
	if c.warmup > 0 {
		log.Info("warm-up", "rate", c.rate, "for", c.warmup)
		if direct != nil {
			load.Run(ctx, plan(c.warmup, c.rate), direct.Do)
		}
		load.Run(ctx, plan(c.warmup, c.rate), gw.Do)
	}
	slice := c.duration / time.Duration(c.slices)
	dOut, gOut := load.Empty(), load.Empty()
	var dActive, gActive time.Duration
	dCPU, gCPU := map[string]time.Duration{}, map[string]time.Duration{}
	// cpu adds the CPU time the processes this run started used during fn to into.
	cpu := func(into map[string]time.Duration, fn func()) {
		before, err1 := procstat.DescendantsCPUByName(os.Getpid())
		fn()
		after, err2 := procstat.DescendantsCPUByName(os.Getpid())
		if err1 != nil || err2 != nil {
			return
		}
		for name, v := range after {
			into[name] += v - before[name]
		}
	}
	// The gateway's own histograms, read around the measured slices (only
	// gateway calls reach them); a gateway without /metrics just has none.
	metricsURL := tg.GatewayURL + "/metrics"
	before, berr := gwmetrics.Scrape(ctx, hc, metricsURL)
	for i := 0; i < c.slices && ctx.Err() == nil; i++ {
		if direct != nil {
			t0 := time.Now()
			cpu(dCPU, func() { dOut.Merge(load.Run(ctx, plan(slice, c.rate), direct.Do)) })
			dActive += time.Since(t0)
		}
		t0 := time.Now()
		cpu(gCPU, func() { gOut.Merge(load.Run(ctx, plan(slice, c.rate), gw.Do)) })
		gActive += time.Since(t0)
		log.Info("slice done", "slice", i+1, "of", c.slices)
	}
	if after, aerr := gwmetrics.Scrape(ctx, hc, metricsURL); berr == nil && aerr == nil {
		res.Steps = gwmetrics.Steps(before, after)
	} else {
		log.Info("the gateway's own step timings are not available", "err", errors.Join(berr, aerr))
	}
	res.Gateway = report.FromOutcome("gateway", tg.GatewayURL, gOut, c.stream, gActive)
	if direct != nil {
		// The system under test keeps working on a gateway slice's calls (audit,
		// settlement, limiter events) into the next direct slice: its CPU over the
		// whole run is charged to the gateway's calls; the direct side is charged
		// only the simulator's CPU during its own slices.
		sut := map[string]time.Duration{}
		for _, m := range []map[string]time.Duration{gCPU, dCPU} {
			for name, v := range m {
				if name != simProcess {
					sut[name] += v
				}
			}
		}
		sut[simProcess] = gCPU[simProcess]
		gCPU, dCPU = sut, map[string]time.Duration{simProcess: dCPU[simProcess]}
	}
	res.Gateway.SetCPU(gCPU)
	if direct != nil {
		d := report.FromOutcome("direct", tg.DirectURL, dOut, c.stream, dActive)
		d.SetCPU(dCPU)
		if d.CPUPerCallUS > 0 || res.Gateway.CPUPerCallUS > 0 {
			v := res.Gateway.CPUPerCallUS - d.CPUPerCallUS
			res.AddedCPUPerCallUS = &v
		}
		res.Direct = &d
		a := load.Added(res.Gateway.Total, d.Total)
		res.Added = &a
		if c.stream && d.TTFT != nil && res.Gateway.TTFT != nil {
			at := load.Added(*res.Gateway.TTFT, *d.TTFT)
			res.AddedTTFT = &at
		}
	}
	if c.search && ctx.Err() == nil {
		log.Info("searching the highest rate held", "slo", c.slo, "budget", c.searchBudget)
		sr := load.Search(ctx, load.SearchPlan{Start: c.searchStart, Max: c.searchMax, Step: c.searchStep, Budget: c.searchBudget, P99: c.slo},
			func(ctx context.Context, rate float64) *load.Outcome {
				o := load.Run(ctx, plan(c.searchStep, rate), gw.Do)
				log.Info("search step", "rate", rate, "p99_us", load.Summarize(o.Latency).P99, "errors", o.Errors)
				// let queues drain before the next step
				time.Sleep(500 * time.Millisecond)
				return o
			})
		res.Search, res.SearchSLO = &sr, "p99 < "+c.slo.String()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.jsonOut {
		return report.JSON(out, res)
	}
	report.Table(out, res)
	return nil
}

// preflight sends one request through the gateway and checks it is governed:
// the answer (the simulator echoes what it received, restored by the gateway)
// must carry the prompt's values back.
func preflight(ctx context.Context, tg *targets.Target, gw *chat.Client, body []byte, prompt string, res *report.Result) error {
	one := *gw
	one.Stream = false
	if gw.Stream {
		b, err := chat.Body(res.Model, prompt, false)
		if err != nil {
			return err
		}
		one.Body = b
	}
	_ = body
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, answer, err := one.Answer(ctx)
	if err != nil {
		return fmt.Errorf("preflight call through the gateway: %w", err)
	}
	if answer == prompt {
		res.Notes = append(res.Notes, "preflight: the gateway answered with the prompt's values restored")
	} else {
		res.Notes = append(res.Notes, "preflight: the answer differs from the prompt (a scripted reply or a different provider)")
	}
	var present []string
	for _, v := range piiValues {
		if strings.Contains(prompt, v) {
			present = append(present, v)
		}
	}
	if tg.Kind == "allinone" && len(present) > 0 {
		got, err := tg.ProviderBodies(ctx)
		if err != nil {
			return fmt.Errorf("preflight: what the built-in simulator received: %w", err)
		}
		for _, b := range got {
			for i, v := range present {
				if strings.Contains(b, v) {
					return fmt.Errorf("preflight: PII value %d of %d in the prompt reached the provider: redaction is not on or misses it", i+1, len(present))
				}
			}
		}
		if len(got) == 0 {
			return errors.New("preflight: the built-in simulator received nothing")
		}
		res.Notes = append(res.Notes, fmt.Sprintf("preflight: none of the prompt's %d PII values reached the provider", len(present)))
	}
	return nil
}

// simProcess is the provider simulator's process name.
const simProcess = "provsim"

// piiValues are the default prompt's personal data, which must never reach the provider.
var piiValues = []string{"Jane Doe", "jane.doe@example.com", "(415) 555-0132", "536-90-4399"}
