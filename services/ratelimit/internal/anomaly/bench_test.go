package anomaly

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

// BenchmarkObserve counts llm_call events against the real Redis as the
// consumer does when it works through a backlog (a new replica starting 14
// days back, or NATS recovering): one event per round trip ("one-by-one") or
// batches of 8, 16 (what the consumer hands over at most) and 64 events. 50 principals with two keys
// each, calls spread over a day.
func BenchmarkObserve(b *testing.B) {
	for _, size := range []int{1, 8, 16, 64} {
		name := "one-by-one"
		if size > 1 {
			name = fmt.Sprint("batch-", size)
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, Config{})
			evs := make([]*auditv1.AuditEvent, b.N)
			for i := range evs {
				p := i % 50
				evs[i] = &auditv1.AuditEvent{EventId: fmt.Sprint("bench-", i), Time: timestamppb.New(monday.Add(time.Duration(i) * 24 * time.Hour / time.Duration(b.N))),
					Environment: "prod", Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{
						RequestId: fmt.Sprint("r-", i), PrincipalId: fmt.Sprint("p", p), ApiKeyId: fmt.Sprint("k", p, "-", i%2),
						ModelServed: "gpt-4o", Provider: "openai", Decision: auditv1.Decision_DECISION_ALLOWED, InputTokens: 300, OutputTokens: 200,
					}}}
			}
			h.batch = size
			b.ResetTimer()
			start := time.Now()
			h.observeAll(evs)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
