package limiter

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions   *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	failOpen    prometheus.Counter
	failClosed  prometheus.Counter
	latency     prometheus.Histogram
	roundTrip   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_decisions_total",
			Help: "Reserve decisions by outcome and whether the local fail-open limiter made them.",
		}, []string{"outcome", "degraded"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_store_errors_total",
			Help: "Redis calls that failed, by operation.",
		}, []string{"op"}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_fail_open_total",
			Help: "Reserve calls decided by the local limiter because Redis was unreachable.",
		}),
		failClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_fail_closed_total",
			Help: "Reserve calls refused because Redis was unreachable.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulwark_ratelimit_reserve_seconds",
			Help:    "Time to decide a Reserve, store round trip included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .1, .5},
		}),
		roundTrip: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bulwark_ratelimit_scripts_per_round_trip",
			Help:    "Scripts (decisions, settlements) carried by one round trip to Redis: 1 when a call went alone, more when concurrent calls shared a pipeline.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.storeErrors, m.failOpen, m.failClosed, m.latency, m.roundTrip)
	}
	return m
}

func (m *metrics) observe(d Decision, took time.Duration) {
	outcome := "denied"
	if d.Allowed {
		outcome = "allowed"
	}
	m.decisions.WithLabelValues(outcome, strconv.FormatBool(d.Degraded)).Inc()
	m.latency.Observe(took.Seconds())
}
