package events

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// publishing runs a Queue that publishes to a stream of ratelimit subjects on
// an embedded JetStream; flush stops it once it has published what is queued.
func publishing(t *testing.T) (q *Queue, s jetstream.Stream, flush func()) {
	t.Helper()
	_, js := platformtest.NATS(t)
	s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"bulwark.ratelimit.v1.>"}})
	if err != nil {
		t.Fatal(err)
	}
	q = NewQueue(NewPublisher(js), nil, 16, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	// Run publishes what is queued before it returns.
	return q, s, func() { cancel(); <-done }
}

func TestQueue_PublishesWithMsgIDAndDeduplicates(t *testing.T) {
	ctx := context.Background()
	q, s, flush := publishing(t)
	for range 3 { // a retried event keeps its id: the stream stores it once
		_ = q.Publish(ctx, LimitExceededSubject, "same-id", []byte("x"))
	}
	_ = q.Publish(ctx, LimitExceededSubject, "other-id", []byte("y"))
	flush()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages; want 2", info.State.Msgs)
	}
}

// An event raised inside a traced call (a denial in Reserve) is published
// with that call's trace context in its headers, although it is published
// later, from the queue.
func TestQueue_PublishesInTheTraceOfTheCallThatRaisedTheEvent(t *testing.T) {
	ctx := context.Background()
	q, s, flush := publishing(t)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
		SpanID: trace.SpanID{0x00, 0xf0, 1, 2, 3, 4, 5, 6}, TraceFlags: trace.FlagsSampled})
	_ = q.Publish(trace.ContextWithSpanContext(ctx, sc), LimitExceededSubject, "traced", []byte("x"))
	_ = q.Publish(ctx, LimitExceededSubject, "untraced", []byte("y"))
	flush()
	for seq, want := range map[uint64]string{1: sc.TraceID().String(), 2: ""} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		got := platform.TraceID(platform.ExtractTrace(ctx, m.Header))
		if got != want {
			t.Fatalf("message %d carries trace %q; want %q", seq, got, want)
		}
	}
}

type failing struct{}

func (failing) Publish(context.Context, string, string, []byte) error { return errors.New("down") }

func TestQueue_DropsAndCountsWhenFullAndNeverBlocks(t *testing.T) {
	q := NewQueue(failing{}, nil, 2, nil)
	// Nobody drains the queue yet: a blocking Publish would hang here.
	for range 5 {
		if err := q.Publish(context.Background(), LimitExceededSubject, "id", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(q.dropped); got != 3 {
		t.Fatalf("dropped %v; want 3", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Run(ctx)
	if got := testutil.ToFloat64(q.failed); got != 2 {
		t.Fatalf("failed %v; want 2", got)
	}
}
