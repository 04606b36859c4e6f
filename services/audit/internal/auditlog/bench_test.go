package auditlog_test

import (
	"context"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/audittest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// publishBacklog publishes n llm_call events asynchronously, as the gateway does.
func publishBacklog(e *audittest.Env, n int) error {
	// The publisher has its own connection, as the gateway does.
	nc, err := nats.Connect(e.NC.ConnectedUrl())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(20000))
	if err != nil {
		return err
	}
	for i := range n {
		ev := audittest.LLMCall(i, "user", "gpt-4o", auditv1.Decision_DECISION_ALLOWED)
		data, _ := proto.Marshal(ev)
		if _, err := js.PublishAsync(evidence.SubjectLLMCall, data, jetstream.WithMsgID(ev.GetEventId())); err != nil {
			return err
		}
		if i%10000 == 9999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	return nil
}

func mustBacklog(b *testing.B, e *audittest.Env, n int) {
	b.Helper()
	if err := publishBacklog(e, n); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIngest measures sustained ingest (b.N records) into the tree on real JetStream,
// with a checkpoint signed by Vault transit every second.
//
//   - backlog: the records are in the stream before the timer starts (the ingester alone).
//   - live: a publisher runs on the same two cores while the ingester drains.
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"backlog", "live"} {
		b.Run(mode, func(b *testing.B) {
			e := audittest.New(b)
			p := e.Params(e.Store)
			p.CheckpointEvery = 1 << 62
			p.CheckpointInterval = time.Second
			p.BatchSize = 4000
			l, err := auditlog.New(context.Background(), p)
			if err != nil {
				b.Fatal(err)
			}
			n := b.N
			if mode == "backlog" {
				mustBacklog(b, e, n)
			}
			b.ResetTimer()
			start := time.Now()
			audittest.Run(b, l)
			pubErr := make(chan error, 1)
			if mode == "live" {
				go func() { pubErr <- publishBacklog(e, n) }()
			}
			for l.Size() < uint64(n) {
				select {
				case err := <-pubErr:
					if err != nil {
						b.Fatal(err)
					}
				case <-time.After(5 * time.Millisecond):
				}
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/el.Seconds(), "records/s")
			// Every record ends up under a signed checkpoint within an interval.
			audittest.WaitFor(b, "a checkpoint covering every record", func() bool {
				cp, err := l.LatestCheckpoint(context.Background())
				return err == nil && cp.Size == uint64(n)
			})
		})
	}
}

// BenchmarkGetRecordWithProof measures GetRecord (stream read + inclusion proof from
// JetStream-backed tiles) on a 100,000-record log.
func BenchmarkGetRecordWithProof(b *testing.B) {
	e := audittest.New(b)
	const n = 100000
	mustBacklog(b, e, n)
	l := e.Open(b)
	audittest.Run(b, l)
	for l.Size() < n {
		time.Sleep(10 * time.Millisecond)
	}
	audittest.WaitCheckpointed(b, e, l)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := l.GetRecord(ctx, uint64(i*7919)%n, "", 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuery measures a filtered page (principal + decision) on a 100,000-record log.
func BenchmarkQuery(b *testing.B) {
	e := audittest.New(b)
	const n = 100000
	mustBacklog(b, e, n)
	l := e.Open(b)
	audittest.Run(b, l)
	for l.Size() < n {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		recs, _, err := l.Query(ctx, auditlog.Filter{Principal: "user", Decision: auditv1.Decision_DECISION_ALLOWED, After: n / 2, Limit: 100})
		if err != nil || len(recs) != 100 {
			b.Fatal(err, len(recs))
		}
	}
}
