package events

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Sender publishes one event; Publisher is one.
type Sender interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
}

type queued struct {
	subject, id string
	data        []byte
	// span is the trace context of the call that raised the event, carried
	// to its publish so that the event stays in that trace.
	span trace.SpanContext
}

// Queue publishes events off the request path: a denial must not wait for the
// stream's ack. When the queue is full (NATS slow or down) events are dropped
// and counted; the gateway's own audit event still records every denial.
type Queue struct {
	send    Sender
	log     *slog.Logger
	ch      chan queued
	dropped prometheus.Counter
	failed  prometheus.Counter
}

// NewQueue returns a queue of the given size; Run must be started.
func NewQueue(send Sender, log *slog.Logger, size int, reg prometheus.Registerer) *Queue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{send: send, log: log, ch: make(chan queued, size),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_ratelimit_events_dropped_total", Help: "Events dropped because the publish queue was full."}),
		failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_ratelimit_events_failed_total", Help: "Events whose publish failed."}),
	}
	if reg != nil {
		reg.MustRegister(q.dropped, q.failed)
	}
	return q
}

// Publish enqueues an event without blocking.
func (q *Queue) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	select {
	case q.ch <- queued{subject, msgID, data, trace.SpanContextFromContext(ctx)}:
	default:
		q.dropped.Inc()
	}
	return nil
}

// Run publishes queued events until ctx is done, then flushes what is queued
// (for at most 5 s). Publishing itself is not tied to ctx: an event taken from
// the queue as ctx ends is still sent.
func (q *Queue) Run(ctx context.Context) {
	pubCtx := context.WithoutCancel(ctx)
	for {
		select {
		case e := <-q.ch:
			q.publish(pubCtx, e, 5*time.Second)
		case <-ctx.Done():
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case e := <-q.ch:
					q.publish(pubCtx, e, time.Until(deadline))
				default:
					return
				}
			}
			return
		}
	}
}

func (q *Queue) publish(ctx context.Context, e queued, within time.Duration) {
	ctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(ctx, e.span), within)
	defer cancel()
	if err := q.send.Publish(ctx, e.subject, e.id, e.data); err != nil {
		q.failed.Inc()
		q.log.WarnContext(ctx, "publishing an event failed", "subject", e.subject, "error", err)
	}
}
