package routing_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/sse"
	"github.com/bulwarkhq/bulwark/services/router/internal/upstream"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// The benchmarks compare the same call made directly to the simulator (zero latency)
// and through the router, in one process on the same cores: the difference is the
// router's overhead. Run: go test -run XX -bench . -benchmem ./internal/routing/

type benchEnv struct {
	url    string
	hc     *http.Client
	router *routing.Router
}

func newBench(b *testing.B) *benchEnv {
	s := sim.New(sim.Params{})
	s.SetRecording(false)
	ts := httptest.NewServer(s)
	b.Cleanup(ts.Close)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	cat, err := catalog.New(catalog.Params{Snapshot: catalog.Snapshot{
		Providers: []catalog.Provider{{Name: "oa", Kind: catalog.KindOpenAI, BaseURL: ts.URL + "/v1", Enabled: true,
			Vendor: catalog.Vendor{SOC2ReportExpiry: time.Now().AddDate(1, 0, 0)}}},
		Routes: []catalog.Route{{Alias: "gpt-4o", Deployments: []catalog.Deployment{{Name: "d", Provider: "oa", Model: "gpt-4o"}}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	r, err := routing.New(routing.Params{Catalog: cat, Keys: &staticKeys{m: map[string]string{"dev/oa/api_key": "k"}},
		Upstream: upstream.New(upstream.Params{HTTPClient: hc})})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{url: ts.URL + "/v1/chat/completions", hc: hc, router: r}
}

func (e *benchEnv) direct(b *testing.B, body []byte) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := e.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	return res
}

var smallBody = []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hello benchmark"}]}`)

func largeBody() []byte {
	// ~1 MiB of history, answer still short (the simulator echoes the last message).
	var sb strings.Builder
	sb.WriteString(`{"model":"gpt-4o","messages":[`)
	for range 256 {
		sb.WriteString(`{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 340) + `"},`)
	}
	sb.WriteString(`{"role":"user","content":"last"}]}`)
	return []byte(sb.String())
}

func benchComplete(b *testing.B, body []byte, viaRouter bool) {
	e := newBench(b)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if viaRouter {
			res, err := e.router.Complete(ctx, routing.Call{Environment: "dev", Format: routing.FormatOpenAIChat, Body: body})
			if err != nil || res.Status != 200 {
				b.Fatal(err)
			}
			continue
		}
		res := e.direct(b, body)
		if _, err := io.ReadAll(res.Body); err != nil || res.StatusCode != 200 {
			b.Fatal(err)
		}
		res.Body.Close()
	}
}

func BenchmarkComplete_Direct(b *testing.B)      { benchComplete(b, smallBody, false) }
func BenchmarkComplete_Router(b *testing.B)      { benchComplete(b, smallBody, true) }
func BenchmarkComplete_Direct_1MiB(b *testing.B) { benchComplete(b, largeBody(), false) }
func BenchmarkComplete_Router_1MiB(b *testing.B) { benchComplete(b, largeBody(), true) }

var streamBody = []byte(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four five six seven eight"}]}`)

// BenchmarkStreamTTFB_* report ttfb-ns/op: time from sending the call to holding the first event.
func BenchmarkStreamTTFB_Direct(b *testing.B) {
	e := newBench(b)
	var ttfb time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		res := e.direct(b, streamBody)
		rd := sse.NewReader(res.Body, 0)
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
		ttfb += time.Since(start)
		for {
			ev, err := rd.Next()
			if err != nil {
				b.Fatal(err)
			}
			if string(ev.Data) == "[DONE]" {
				break
			}
		}
		res.Body.Close()
	}
	b.ReportMetric(float64(ttfb.Nanoseconds())/float64(b.N), "ttfb-ns/op")
}

func BenchmarkStreamTTFB_Router(b *testing.B) {
	e := newBench(b)
	ctx := context.Background()
	var ttfb time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		first := true
		_, err := e.router.Stream(ctx, routing.Call{Environment: "dev", Format: routing.FormatOpenAIChat, Body: streamBody}, func(ev routing.StreamEvent) error {
			if first {
				ttfb += time.Since(start)
				first = false
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(ttfb.Nanoseconds())/float64(b.N), "ttfb-ns/op")
}

// replay is an Upstream that answers with bytes recorded from the simulator, so the
// Overhead benchmarks time the router's own work (selection, key, breaker, body
// splice, usage extraction, relay) without the network and the simulator's CPU.
type replay struct {
	status int
	body   []byte
	sink   int64
}

func (r *replay) Do(_ context.Context, req *routing.UpstreamRequest) (*routing.UpstreamResponse, error) {
	for _, p := range req.Body { // the transport would read every byte once
		r.sink += int64(len(p))
	}
	return &routing.UpstreamResponse{Status: r.status, Body: io.NopCloser(bytes.NewReader(r.body))}, nil
}

func recorded(b *testing.B, body []byte) []byte {
	e := newBench(b)
	res := e.direct(b, body)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func newReplayRouter(b *testing.B, answer []byte) *routing.Router {
	cat, err := catalog.New(catalog.Params{Snapshot: catalog.Snapshot{
		Providers: []catalog.Provider{{Name: "oa", Kind: catalog.KindOpenAI, BaseURL: "http://unused/v1", Enabled: true,
			Vendor: catalog.Vendor{SOC2ReportExpiry: time.Now().AddDate(1, 0, 0)}}},
		Routes: []catalog.Route{{Alias: "gpt-4o", Deployments: []catalog.Deployment{{Name: "d", Provider: "oa", Model: "gpt-4o"}}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	r, err := routing.New(routing.Params{Catalog: cat, Keys: &staticKeys{m: map[string]string{"dev/oa/api_key": "k"}},
		Upstream: &replay{status: 200, body: answer}})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func benchOverhead(b *testing.B, body []byte) {
	r := newReplayRouter(b, recorded(b, body))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := r.Complete(ctx, routing.Call{Environment: "dev", Format: routing.FormatOpenAIChat, Body: body})
		if err != nil || res.Usage.Output == 0 {
			b.Fatal(err)
		}
	}
}

func BenchmarkOverhead_Complete(b *testing.B)      { benchOverhead(b, smallBody) }
func BenchmarkOverhead_Complete_1MiB(b *testing.B) { benchOverhead(b, largeBody()) }

func BenchmarkOverhead_StreamTTFB(b *testing.B) {
	r := newReplayRouter(b, recorded(b, streamBody))
	ctx := context.Background()
	var ttfb time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		first := true
		_, err := r.Stream(ctx, routing.Call{Environment: "dev", Format: routing.FormatOpenAIChat, Body: streamBody}, func(ev routing.StreamEvent) error {
			if first {
				ttfb += time.Since(start)
				first = false
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(ttfb.Nanoseconds())/float64(b.N), "ttfb-ns/op")
}
