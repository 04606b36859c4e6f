package audit_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/services/audit"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func config() audit.Config {
	var c audit.Config
	if err := platform.LoadConfig("BULWARK_AUDIT_TEST_UNSET_", &c); err != nil {
		panic(err)
	}
	return c
}

func TestConfig_RequiresIdentityUnlessAuthIsDisabled(t *testing.T) {
	platformtest.ServiceAuthValidated(t, func(a platform.ServiceAuth) error {
		c := config()
		c.ServiceAuth = a
		return c.Validate()
	})
	c := config()
	c.AuthDisabled = true
	c.Retention = time.Hour
	if err := c.Validate(); err == nil {
		t.Fatal("a one-hour retention validated")
	}
}

func TestNew_MountsAServiceThatIngestsAndSigns(t *testing.T) {
	_, js := platformtest.NATS(t)
	vs := platformtest.Vault(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := config()
	c.AuthDisabled, c.Origin, c.CheckpointInterval = true, "bulwark.audit/mount-test", 100*time.Millisecond
	reg := prometheus.NewRegistry()
	svc, err := audit.New(ctx, audit.Params{Config: c, Logger: slog.New(slog.DiscardHandler), JS: js, Vault: vs.Client, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	go svc.Run(ctx)
	mux := http.NewServeMux()
	mux.Handle(svc.Path, svc.Handler)
	client := auditv1connect.NewAuditServiceClient(platform.HTTPClient(), platformtest.Serve(t, mux))

	ev := &auditv1.AuditEvent{EventId: ulid.Make().String(), Time: timestamppb.Now(), SourceService: "identity",
		Payload: &auditv1.AuditEvent_AdminAction{AdminAction: &auditv1.AdminAction{Actor: "root", Action: "identity.apikey.create"}}}
	b, _ := proto.Marshal(ev)
	if _, err := js.Publish(ctx, "bulwark.audit.v1.admin_action", b, jetstream.WithMsgID(ev.GetEventId())); err != nil {
		t.Fatal(err)
	}
	var rec *auditv1.GetRecordResponse
	platformtest.WaitFor(t, 20*time.Second, "the record to become provable", func(ctx context.Context) error {
		res, err := client.GetRecord(ctx, connect.NewRequest(&auditv1.GetRecordRequest{EventId: ev.GetEventId()}))
		if err == nil {
			rec = res.Msg
		}
		return err
	})
	if rec.GetCheckpoint().GetOrigin() != c.Origin || rec.GetRecord().GetEvent().GetAdminAction().GetActor() != "root" {
		t.Fatalf("record: %v", rec)
	}
	if n := gaugeValue(t, reg, "bulwark_audit_checkpoint_tree_size"); n != 1 {
		t.Fatalf("checkpoint size gauge %v, want 1", n)
	}
	pk, err := client.GetPublicKey(ctx, connect.NewRequest(&auditv1.GetPublicKeyRequest{}))
	if err != nil || !strings.HasPrefix(pk.Msg.GetVerifierKey(), c.Origin+"+") || !strings.Contains(pk.Msg.GetPublicKeyPem(), "BEGIN PUBLIC KEY") {
		t.Fatalf("public key: %v %v", pk, err)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
