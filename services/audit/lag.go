package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
)

// registerLag exports how far ingestion trails the audit stream: events
// published and not yet acknowledged by the ingest consumer. A growing value
// means records are accepted by JetStream but not yet in the Merkle tree, so
// not yet provable (alert: BulwarkAuditIngestLag).
func registerLag(reg prometheus.Registerer, js jetstream.JetStream) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bulwark_audit_ingest_lag_messages",
		Help: "Audit events in the stream not yet ingested into the tree (consumer pending + unacknowledged); -1 when unknown.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, jsstore.AuditStream, jsstore.ConsumerName)
		if err != nil {
			return -1
		}
		info, err := c.Info(ctx)
		if err != nil {
			return -1
		}
		return float64(info.NumPending) + float64(info.NumAckPending)
	})
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register audit lag: %w", err)
	}
	return nil
}
