package router

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
)

// statusUpstream answers every call with a fixed status, or a transport error when status is 0.
type statusUpstream struct{ status int }

func (s statusUpstream) Do(ctx context.Context, req *routing.UpstreamRequest) (*routing.UpstreamResponse, error) {
	if s.status == 0 {
		return nil, errors.New("connection refused")
	}
	return &routing.UpstreamResponse{Status: s.status, Body: http.NoBody}, nil
}

func TestObservedUpstream_CountsEachProviderCallByOutcomeAndTracesIt(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newProviderMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	req := &routing.UpstreamRequest{Provider: catalog.Provider{Name: "openai"}, Op: routing.OpChat, Model: "gpt-4o"}
	for _, st := range []int{200, 200, 429, 503, 0} {
		_, _ = observeUpstream(statusUpstream{st}, tp, m).Do(context.Background(), req)
	}
	for outcome, want := range map[string]float64{"2xx": 2, "429": 1, "5xx": 1, "transport": 1} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("openai", "chat", outcome)); got != want {
			t.Errorf("outcome %s: %v calls, want %v", outcome, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("duration series: %d, want 1", n)
	}
	got := spans.GetSpans()
	if len(got) != 5 || got[0].Name != "provider openai" {
		t.Fatalf("spans: %d, first %q", len(got), got[0].Name)
	}
	if got[3].Status.Code.String() != "Error" || got[4].Status.Code.String() != "Error" || got[0].Status.Code.String() == "Error" {
		t.Errorf("span statuses: %v %v %v", got[0].Status, got[3].Status, got[4].Status)
	}
}

func TestProviderMetrics_BreakerGaugeFollowsTheCircuitState(t *testing.T) {
	m, err := newProviderMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for state, want := range map[string]float64{"open": 1, "half-open": 0.5, "closed": 0} {
		m.breakerChanged("gpt-4o/openai-gpt-4o", state)
		if got := testutil.ToFloat64(m.breaker.WithLabelValues("gpt-4o/openai-gpt-4o")); got != want {
			t.Errorf("%s: gauge %v, want %v", state, got, want)
		}
	}
	var none *providerMetrics
	none.breakerChanged("x", "open") // without a registry nothing is recorded, and nothing panics
	if observeUpstream(statusUpstream{200}, nil, nil) != (statusUpstream{200}) {
		t.Error("without tracing or metrics the upstream is not wrapped")
	}
}
