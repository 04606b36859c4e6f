package routing_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/upstream"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func TestRotation_NewVaultVersionIsUsedWithoutFailingTraffic(t *testing.T) {
	v := platformtest.Vault(t)
	ctx := context.Background()
	path := "bulwark/staging/providers/oa"
	if _, err := v.Client.KVv2("secret").Put(ctx, path, map[string]any{"api_key": "old-key"}); err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Params{APIKeys: []string{"old-key", "new-key"}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	cat, err := catalog.New(catalog.Params{Snapshot: catalog.Snapshot{
		Providers: []catalog.Provider{{Name: "oa", Kind: catalog.KindOpenAI, BaseURL: ts.URL + "/v1", Enabled: true,
			Vendor: catalog.Vendor{SOC2ReportExpiry: time.Now().Add(time.Hour * 24 * 30)}}},
		Routes: []catalog.Route{{Alias: "gpt", Deployments: []catalog.Deployment{{Name: "d", Provider: "oa", Model: "gpt-4o"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	src := keys.New(keys.Params{Store: keys.NewVaultStore(v.Client, "secret"), TTL: 50 * time.Millisecond})
	r, err := routing.New(routing.Params{Catalog: cat, Keys: src, Upstream: upstream.New(upstream.Params{})})
	if err != nil {
		t.Fatal(err)
	}

	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := r.Complete(ctx, routing.Call{Environment: "staging", Format: routing.FormatOpenAIChat, Body: oaBody("gpt", "x", "")})
				calls.Add(1)
				if err != nil || res.Status != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := v.Client.KVv2("secret").Put(ctx, path, map[string]any{"api_key": "new-key"}); err != nil {
		t.Fatal(err)
	}
	rotatedAt := time.Now()
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()

	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during rotation", failures.Load(), calls.Load())
	}
	var oldBefore, newAfter, oldLate int
	for _, req := range s.Requests() {
		auth := req.Header.Get("Authorization")
		switch {
		case req.Time.Before(rotatedAt) && auth == "Bearer old-key":
			oldBefore++
		case req.Time.After(rotatedAt.Add(200*time.Millisecond)) && auth == "Bearer old-key":
			oldLate++
		case req.Time.After(rotatedAt) && auth == "Bearer new-key":
			newAfter++
		}
	}
	t.Logf("%d calls, 0 failed; old key before rotation %d, new key after %d, old key >200ms after rotation %d", calls.Load(), oldBefore, newAfter, oldLate)
	if oldBefore == 0 || newAfter == 0 || oldLate != 0 {
		t.Fatalf("old before=%d, new after=%d, old long after rotation=%d", oldBefore, newAfter, oldLate)
	}
}
