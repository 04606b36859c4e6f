package router

// Provider-call observability: RED metrics per provider, the circuit-breaker
// gauge, and a client span per provider call. Labels hold only configured
// names (provider, deployment) and status classes, never a key, a model
// prompt or a caller identity.

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
)

// providerMetrics are nil-safe: without a Registerer nothing is recorded.
type providerMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	breaker  *prometheus.GaugeVec
}

func newProviderMetrics(reg prometheus.Registerer) (*providerMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &providerMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_router_provider_requests_total",
			Help: "Provider calls by provider, operation and outcome (2xx, 4xx, 429, 5xx, transport).",
		}, []string{"provider", "op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bulwark_router_provider_duration_seconds",
			Help:    "Time from sending a provider call to its response headers, by provider.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64},
		}, []string{"provider", "op"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_router_breaker_open",
			Help: "1 while a deployment's circuit breaker is open, 0.5 half-open, 0 closed (deployment = route/deployment name).",
		}, []string{"deployment"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *providerMetrics) breakerChanged(deployment, state string) {
	if m == nil {
		return
	}
	v := 0.0
	switch state {
	case "open":
		v = 1
	case "half-open":
		v = 0.5
	}
	m.breaker.WithLabelValues(deployment).Set(v)
}

func outcome(status int) string {
	switch {
	case status == 429:
		return "429"
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	default:
		return strconv.Itoa(status/100) + "xx"
	}
}

func opName(op routing.Op) string {
	switch op {
	case routing.OpChat:
		return "chat"
	case routing.OpMessages:
		return "messages"
	case routing.OpEmbeddings:
		return "embeddings"
	}
	return "other"
}

// observedUpstream decorates the provider client.
type observedUpstream struct {
	next    routing.Upstream
	tracer  trace.Tracer
	metrics *providerMetrics
}

func observeUpstream(next routing.Upstream, tp trace.TracerProvider, m *providerMetrics) routing.Upstream {
	if tp == nil && m == nil {
		return next
	}
	o := &observedUpstream{next: next, metrics: m}
	if tp != nil {
		o.tracer = tp.Tracer("github.com/bulwarkhq/bulwark/services/router")
	}
	return o
}

func (o *observedUpstream) Do(ctx context.Context, req *routing.UpstreamRequest) (*routing.UpstreamResponse, error) {
	prov, op := req.Provider.Name, opName(req.Op)
	var span trace.Span
	if o.tracer != nil {
		ctx, span = o.tracer.Start(ctx, "provider "+prov, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("bulwark.provider", prov), attribute.String("gen_ai.request.model", req.Model),
				attribute.Bool("bulwark.stream", req.Stream)))
		// The span covers the call up to the response headers; a streamed body may outlive it.
		defer span.End()
	}
	start := time.Now()
	res, err := o.next.Do(ctx, req)
	oc := "transport"
	if err == nil {
		oc = outcome(res.Status)
	}
	if o.metrics != nil {
		o.metrics.requests.WithLabelValues(prov, op, oc).Inc()
		o.metrics.duration.WithLabelValues(prov, op).Observe(time.Since(start).Seconds())
	}
	if span != nil {
		span.SetAttributes(attribute.String("bulwark.outcome", oc))
		if err != nil || oc == "5xx" {
			span.SetStatus(codes.Error, oc)
		}
	}
	return res, err
}
