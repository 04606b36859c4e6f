package events

import (
	"context"
	"fmt"
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
		c, err := NewConsumer(ConsumerParams{JS: js, StartFrom: time.Hour, Handler: func(_ context.Context, ev *auditv1.AuditEvent) error {
			seen <- ev.GetEventId()
			return nil
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
