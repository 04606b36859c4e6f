// Package events connects the service to NATS JetStream: it publishes
// protobuf events with their id as Nats-Msg-Id (so retries never duplicate),
// and consumes llm_call audit events with a durable consumer.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/platform"
)

// Subjects this service consumes and publishes.
const (
	LLMCallSubject       = "bulwark.audit.v1.llm_call"
	LimitExceededSubject = "bulwark.ratelimit.v1.limit_exceeded"
	AuditStream          = "BULWARK_AUDIT"
)

// Publisher publishes to JetStream and waits for the stream's ack.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish sends data on subject with msgID as Nats-Msg-Id and ctx's trace
// context in the headers (the audit service continues that trace).
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	platform.InjectTrace(ctx, msg.Header)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// Handler processes audit events in the order they were delivered and returns
// one error per event; an event with an error is delivered again.
type Handler func(ctx context.Context, evs []*auditv1.AuditEvent) []error

// maxBatch bounds the events handed to the handler at once. A batch's scripts
// run back to back in Redis, ahead of any reservation that arrives meanwhile:
// 16 events (32 scripts, about 1.5 ms of Redis) keep that short and already
// count a backlog as fast as 64 do.
const maxBatch = 16

// ConsumerParams configures a Consumer.
type ConsumerParams struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Stream holding the llm_call events; default BULWARK_AUDIT.
	Stream string
	// Durable consumer name, shared by every replica (they split the work); default "ratelimit-anomaly".
	Durable string
	// StartFrom is how far back a new durable consumer starts (its baselines learn from it); default 14 days.
	StartFrom time.Duration
	Handler   Handler
	// TracerProvider, when set, records each event's receipt as a consumer
	// span in the trace of the call the event records.
	TracerProvider trace.TracerProvider
}

// Consumer feeds llm_call events to a handler.
type Consumer struct {
	p ConsumerParams
}

// NewConsumer validates params.
func NewConsumer(p ConsumerParams) (*Consumer, error) {
	if p.JS == nil || p.Handler == nil {
		return nil, errors.New("events: JS and Handler are required")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Stream == "" {
		p.Stream = AuditStream
	}
	if p.Durable == "" {
		p.Durable = "ratelimit-anomaly"
	}
	if p.StartFrom <= 0 {
		p.StartFrom = 14 * 24 * time.Hour
	}
	return &Consumer{p: p}, nil
}

// consumer returns the durable consumer, creating it on first use. An existing
// durable is reused as it is: it remembers where it stopped, and its start time
// cannot be changed once set (an update that names a new one is refused), so a
// restart must not try to.
func (c *Consumer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := c.p.JS.Consumer(ctx, c.p.Stream, c.p.Durable)
	if err == nil || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return cons, err
	}
	start := time.Now().Add(-c.p.StartFrom)
	cons, err = c.p.JS.CreateConsumer(ctx, c.p.Stream, jetstream.ConsumerConfig{
		Durable:       c.p.Durable,
		FilterSubject: LLMCallSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckWait:       30 * time.Second,
		MaxDeliver:    10,
	})
	if errors.Is(err, jetstream.ErrConsumerExists) {
		// Another replica created it first.
		return c.p.JS.Consumer(ctx, c.p.Stream, c.p.Durable)
	}
	return cons, err
}

// Run consumes until ctx is done. It waits for the stream to exist (the audit
// service creates it) rather than failing.
func (c *Consumer) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for {
		var err error
		if cons, err = c.consumer(ctx); err == nil {
			break
		}
		c.p.Logger.WarnContext(ctx, "waiting for the audit stream", "stream", c.p.Stream, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	// Delivery hands messages over in order; the worker takes whatever has
	// arrived, up to maxBatch, so that under load one round trip to Redis
	// counts many events, and an idle stream still handles each at once.
	msgs := make(chan jetstream.Msg, 256)
	cc, err := cons.Consume(func(m jetstream.Msg) { msgs <- m }, jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.p.Stream, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.work(ctx, msgs) })
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	close(msgs)
	wg.Wait()
	return nil
}

// work handles the delivered messages in batches until msgs is closed.
func (c *Consumer) work(ctx context.Context, msgs <-chan jetstream.Msg) {
	batch := make([]jetstream.Msg, 0, maxBatch)
	for m := range msgs {
		batch = append(batch[:0], m)
	more:
		for len(batch) < maxBatch {
			select {
			case m, ok := <-msgs:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		c.handle(ctx, batch)
	}
}

// handle decodes a batch, hands its events to the handler and acknowledges
// each message by its own outcome.
func (c *Consumer) handle(ctx context.Context, batch []jetstream.Msg) {
	evs := make([]*auditv1.AuditEvent, 0, len(batch))
	kept := make([]jetstream.Msg, 0, len(batch))
	for _, m := range batch {
		ev := &auditv1.AuditEvent{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil || ev.GetLlmCall() == nil {
			c.p.Logger.WarnContext(ctx, "dropping an undecodable llm_call event")
			_ = m.Term()
			continue
		}
		platform.ConsumeSpan(ctx, c.p.TracerProvider, "ratelimit count "+m.Subject(), m.Headers())
		evs = append(evs, ev)
		kept = append(kept, m)
	}
	if len(evs) == 0 {
		return
	}
	errs := c.p.Handler(ctx, evs)
	for i, m := range kept {
		if i < len(errs) && errs[i] != nil {
			c.p.Logger.WarnContext(ctx, "llm_call event failed; it will be redelivered", "error", errs[i])
			_ = m.NakWithDelay(time.Second)
			continue
		}
		_ = m.Ack()
	}
}
