package pipeline

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

// Metrics are the gateway's measurements of governed calls: how each ended,
// how long each step took, and the time the gateway itself added.
type Metrics struct {
	calls    *prometheus.CounterVec
	stage    *prometheus.HistogramVec
	overhead *prometheus.HistogramVec

	reserve, redact, prepare, provider, restore prometheus.Observer
	// ownWhole and ownStreamed are overhead's two series.
	ownWhole, ownStreamed prometheus.Observer
}

// Stages, the values of the stage label.
const (
	StagePrepare  = "prepare"  // authenticate, authorize, reserve and redact, rewrite: everything before the provider
	StageReserve  = "reserve"  // the rate limit reservation (runs beside redaction)
	StageRedact   = "redact"   // redaction of the prompt
	StageProvider = "provider" // the router and the provider, until the answer or, streamed, its first event
	StageRestore  = "restore"  // putting the originals back into a whole answer
)

// latencyBuckets span 25 µs to about 52 s: the gateway's own steps and a
// provider's answer on one scale.
var latencyBuckets = prometheus.ExponentialBuckets(25e-6, 2, 22)

// NewMetrics registers the gateway's metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_gateway_calls_total",
			Help: "LLM calls through the gateway by front door (api) and how they ended (decision as in the audit record: allowed, denied_auth, denied_policy, denied_rate_limit, denied_redaction, failed_provider, failed_internal)."},
			[]string{"api", "decision"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bulwark_gateway_stage_duration_seconds",
			Help: "Time of each step of a governed call that reached it: prepare, reserve, redact, provider, restore.", Buckets: latencyBuckets},
			[]string{"stage"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bulwark_gateway_overhead_seconds",
			Help: "Time the gateway added to a call that reached the provider: prepare, plus restore for a whole answer (streamed: to the first event).", Buckets: latencyBuckets},
			[]string{"streamed"}),
	}
	m.reserve = m.stage.WithLabelValues(StageReserve)
	m.redact = m.stage.WithLabelValues(StageRedact)
	m.prepare = m.stage.WithLabelValues(StagePrepare)
	m.provider = m.stage.WithLabelValues(StageProvider)
	m.restore = m.stage.WithLabelValues(StageRestore)
	m.ownWhole = m.overhead.WithLabelValues("false")
	m.ownStreamed = m.overhead.WithLabelValues("true")
	if reg != nil {
		reg.MustRegister(m.calls, m.stage, m.overhead)
	}
	return m
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }

// decisionLabels name decisions as the metrics do: "allowed", "denied_auth", ...
var decisionLabels = func() map[auditv1.Decision]string {
	m := make(map[auditv1.Decision]string, len(auditv1.Decision_name))
	for n, name := range auditv1.Decision_name {
		m[auditv1.Decision(n)] = strings.TrimPrefix(strings.ToLower(name), "decision_")
	}
	return m
}()

func (m *Metrics) call(api string, d auditv1.Decision) {
	label, ok := decisionLabels[d]
	if !ok {
		label = "unspecified"
	}
	m.calls.WithLabelValues(api, label).Inc()
}
