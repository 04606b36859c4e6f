package routing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/upstream"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// staticKeys is a KeySource over a fixed map (Vault-backed keys are tested in package keys).
type staticKeys struct {
	mu sync.Mutex
	m  map[string]string // "env/provider/name"
}

func (s *staticKeys) Key(_ context.Context, env, provider, name string) (keys.Key, error) {
	if name == "" {
		name = keys.DefaultField
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[env+"/"+provider+"/"+name]
	if !ok {
		return keys.Key{}, keys.ErrUnavailable
	}
	return keys.NewKey(v), nil
}

type env struct {
	sims    map[string]*sim.Sim
	cat     *catalog.Catalog
	router  *routing.Router
	keys    *staticKeys
	sleeps  []time.Duration
	sleepMu sync.Mutex
}

var future = time.Now().Add(365 * 24 * time.Hour)

// newEnv starts one simulator per provider: "oa" (OpenAI), "an" (Anthropic), "az"
// (Azure), "oa2" (a second OpenAI-compatible server), and routes:
//   - gpt: oa only;  claude: an only;  azure: az only
//   - fallback: oa (priority 0) then an (priority 1)
func newEnv(t *testing.T, mut ...func(*catalog.Snapshot)) *env {
	t.Helper()
	e := &env{sims: map[string]*sim.Sim{}, keys: &staticKeys{m: map[string]string{}}}
	kinds := map[string]catalog.Kind{"oa": catalog.KindOpenAI, "an": catalog.KindAnthropic, "az": catalog.KindAzureOpenAI, "oa2": catalog.KindOpenAI}
	var snap catalog.Snapshot
	for _, name := range []string{"an", "az", "oa", "oa2"} {
		s := sim.New(sim.Params{})
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		e.sims[name] = s
		base := ts.URL
		if kinds[name] == catalog.KindOpenAI {
			base += "/v1"
		}
		snap.Providers = append(snap.Providers, catalog.Provider{
			Name: name, Kind: kinds[name], BaseURL: base, APIVersion: "2024-10-21", Enabled: true,
			Vendor: catalog.Vendor{LegalName: name + " Inc.", SOC2ReportExpiry: future, DPASigned: true},
		})
		e.keys.m["dev/"+name+"/api_key"] = "key-" + name
	}
	snap.Routes = []catalog.Route{
		{Alias: "gpt", Deployments: []catalog.Deployment{{Name: "oa-gpt", Provider: "oa", Model: "gpt-4o"}}},
		{Alias: "claude", Deployments: []catalog.Deployment{{Name: "an-claude", Provider: "an", Model: "claude-sonnet-4-5"}}},
		{Alias: "azure", Deployments: []catalog.Deployment{{Name: "az-gpt", Provider: "az", Model: "gpt4o-eu"}}},
		{Alias: "fallback", Deployments: []catalog.Deployment{
			{Name: "primary", Provider: "oa", Model: "gpt-4o", Priority: 0},
			{Name: "secondary", Provider: "an", Model: "claude-haiku-4-5", Priority: 1},
		}},
		{Alias: "embed", Deployments: []catalog.Deployment{{Name: "oa-emb", Provider: "oa", Model: "text-embedding-3-small"}}},
	}
	for _, m := range mut {
		m(&snap)
	}
	cat, err := catalog.New(catalog.Params{Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	e.cat = cat
	rng := rand.New(rand.NewPCG(1, 2))
	var rmu sync.Mutex
	r, err := routing.New(routing.Params{
		Catalog: cat, Keys: e.keys, Upstream: upstream.New(upstream.Params{}),
		Breaker: routing.BreakerSettings{ConsecutiveFailures: 3, OpenFor: time.Hour},
		Rand: func() float64 {
			rmu.Lock()
			defer rmu.Unlock()
			return rng.Float64()
		},
		Sleep: func(_ context.Context, d time.Duration) error {
			e.sleepMu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.sleepMu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.router = r
	return e
}

func oaBody(model, text string, extra string) []byte {
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":%q}]%s}`, model, text, extra)
}

func anBody(model, text string, extra string) []byte {
	return fmt.Appendf(nil, `{"model":%q,"max_tokens":100,"messages":[{"role":"user","content":%q}]%s}`, model, text, extra)
}

func chat(model, text string) routing.Call {
	return routing.Call{RequestID: "req-1", Environment: "dev", Format: routing.FormatOpenAIChat, Body: oaBody(model, text, "")}
}

type collected struct {
	events []routing.StreamEvent
	heads  int
}

func (c *collected) emit(ev routing.StreamEvent) error {
	ev.Data = append([]byte(nil), ev.Data...)
	if ev.Head != nil {
		c.heads++
	}
	c.events = append(c.events, ev)
	return nil
}
