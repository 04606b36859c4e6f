package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// TestConsumer_ResumesAfterRestartWithoutRedeliveringOrStalling restarts the
// consumer on an existing durable (as a restarted ratelimit replica does): it
// must pick up new events where it stopped, not loop on a refused update.
func TestConsumer_ResumesAfterRestartWithoutRedeliveringOrStalling(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: AuditStream, Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(id string) {
		t.Helper()
		b, _ := proto.Marshal(&auditv1.AuditEvent{EventId: id, Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{RequestId: id}}})
		if _, err := js.Publish(ctx, LLMCallSubject, b); err != nil {
			t.Fatal(err)
		}
	}
	run := func(want int) []string {
		t.Helper()
		seen := make(chan string, 16)
		c, err := NewConsumer(ConsumerParams{JS: js, StartFrom: time.Hour, Handler: func(_ context.Context, evs []*auditv1.AuditEvent) []error {
			for _, ev := range evs {
				seen <- ev.GetEventId()
			}
			return make([]error, len(evs))
		}})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		var got []string
		for len(got) < want {
			select {
			case id := <-seen:
				got = append(got, id)
			case <-time.After(15 * time.Second):
				cancel()
				t.Fatalf("consumer handled %v, want %d events", got, want)
			}
		}
		// Nothing more arrives: no redelivery of acknowledged events.
		select {
		case id := <-seen:
			t.Fatalf("unexpected extra event %s after %v", id, got)
		case <-time.After(300 * time.Millisecond):
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return got
	}
	publish("a")
	publish("b")
	if got := run(2); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("first run handled %v", got)
	}
	publish("c")
	if got := run(1); fmt.Sprint(got) != "[c]" {
		t.Fatalf("after restart handled %v, want only the new event", got)
	}
}

// TestConsumer_HandsOverBatchesAndRedeliversOnlyTheFailedEvent publishes a
// backlog, so that delivery hands the handler several events at once; one
// event fails the first time and is the only one delivered again.
func TestConsumer_HandsOverBatchesAndRedeliversOnlyTheFailedEvent(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: AuditStream, Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		b, _ := proto.Marshal(&auditv1.AuditEvent{EventId: fmt.Sprint("e", i), Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{}}})
		if _, err := js.Publish(ctx, LLMCallSubject, b); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	handled := map[string]int{}
	largest, total := 0, 0
	c, err := NewConsumer(ConsumerParams{JS: js, StartFrom: time.Hour, Handler: func(_ context.Context, evs []*auditv1.AuditEvent) []error {
		mu.Lock()
		defer mu.Unlock()
		largest = max(largest, len(evs))
		errs := make([]error, len(evs))
		for i, ev := range evs {
			id := ev.GetEventId()
			handled[id]++
			total++
			if id == "e42" && handled[id] == 1 {
				errs[i] = errors.New("redis went away for a moment")
			}
		}
		return errs
	}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		finished := len(handled) == n && handled["e42"] == 2
		mu.Unlock()
		if finished {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("handled %d distinct events, e42 %d times; want %d and 2", len(handled), handled["e42"], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // nothing else may arrive
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if total != n+1 {
		t.Fatalf("%d deliveries handled; want %d (each once, e42 twice)", total, n+1)
	}
	if largest < 2 || largest > maxBatch {
		t.Fatalf("largest batch %d; a backlog should come in batches of 2 to %d", largest, maxBatch)
	}
}
