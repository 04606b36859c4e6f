package auditpub_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/auditpub"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

// natsEnv is a real NATS server that a test can stop and start again on the
// same port and store directory, like a restarted deployment.
type natsEnv struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
}

func newNATSEnv(t *testing.T) *natsEnv {
	t.Helper()
	e := &natsEnv{t: t, dir: t.TempDir(), port: platformtest.FreePort(t)}
	e.start()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", e.port), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	e.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}, Storage: jetstream.FileStorage,
		Duplicates: 10 * time.Minute, DenyDelete: true, DenyPurge: true,
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return e
}

func (e *natsEnv) start() {
	e.t.Helper()
	srv, err := platform.StartEmbeddedNATS(platform.EmbeddedNATSParams{Dir: e.dir, Port: e.port})
	if err != nil {
		e.t.Fatalf("start nats: %v", err)
	}
	e.srv = srv
	e.t.Cleanup(srv.Shutdown)
}

func (e *natsEnv) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for e.nc.Status() == nats.CONNECTED && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *natsEnv) waitConnected() {
	platformtest.Until(e.t, 10*time.Second, "the client to reconnect", func() bool { return e.nc.Status() == nats.CONNECTED })
}

// stored returns the event ids in the audit stream, in stream order.
func (e *natsEnv) stored() []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, "BULWARK_AUDIT")
	if err != nil {
		e.t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatalf("get msg %d: %v", seq, err)
		}
		ev := &auditv1.AuditEvent{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			e.t.Fatalf("decode msg %d: %v", seq, err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.GetEventId() {
			e.t.Fatalf("msg %d: Nats-Msg-Id %q is not the event id %q", seq, m.Header.Get(jetstream.MsgIDHeader), ev.GetEventId())
		}
		ids = append(ids, ev.GetEventId())
	}
	return ids
}

func newEvent(i int) *auditv1.AuditEvent {
	return &auditv1.AuditEvent{EventId: ulid.Make().String(), Time: timestamppb.Now(), SourceService: "gateway", Environment: "dev",
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{RequestId: fmt.Sprintf("req_%d", i), Status: 200,
			Decision: auditv1.Decision_DECISION_ALLOWED}}}
}

func newPublisher(t *testing.T, e *natsEnv, dir string) *auditpub.Publisher {
	t.Helper()
	p, err := auditpub.New(auditpub.Params{Conn: e.nc, JS: e.js, SpoolDir: dir, Logger: slog.New(slog.DiscardHandler),
		AckTimeout: 300 * time.Millisecond, ReplayInterval: 30 * time.Millisecond})
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	return p
}

func waitSpoolEmpty(t *testing.T, p *auditpub.Publisher) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.Spooled() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d events", p.Spooled())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRecord_NATSDownAndBack_NothingAcknowledgedIsLostOrDoubled(t *testing.T) {
	e := newNATSEnv(t)
	p := newPublisher(t, e, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	var mu sync.Mutex
	var acked []string
	record := func(ev *auditv1.AuditEvent) {
		if err := p.Record(context.Background(), ev); err != nil {
			t.Errorf("record %s: %v", ev.EventId, err)
			return
		}
		mu.Lock()
		acked = append(acked, ev.EventId)
		mu.Unlock()
	}
	// Up: concurrent records go straight to JetStream.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); record(newEvent(i)) }()
	}
	wg.Wait()
	if p.Spooled() != 0 {
		t.Fatalf("events spooled while NATS was up: %d", p.Spooled())
	}

	// Down: records are fsynced to the spool, in order.
	e.stop()
	var downOrder []string
	for i := range 30 {
		ev := newEvent(100 + i)
		record(ev)
		downOrder = append(downOrder, ev.EventId)
	}
	if !p.Durable() {
		t.Fatal("publisher with a writable spool reports it cannot record durably")
	}
	if got := p.Spooled(); got != 30 {
		t.Fatalf("spooled = %d, want 30", got)
	}

	// Back: the spool is replayed in order, and new events follow it.
	e.start()
	e.waitConnected()
	for i := range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); record(newEvent(200 + i)) }()
	}
	wg.Wait()
	waitSpoolEmpty(t, p)

	stored := e.stored()
	if len(stored) != len(acked) {
		t.Fatalf("stream holds %d events, %d were acknowledged", len(stored), len(acked))
	}
	seen := map[string]int{}
	for i, id := range stored {
		if _, dup := seen[id]; dup {
			t.Fatalf("event %s stored twice", id)
		}
		seen[id] = i
	}
	for _, id := range acked {
		if _, ok := seen[id]; !ok {
			t.Fatalf("acknowledged event %s is missing from the stream", id)
		}
	}
	for i := 1; i < len(downOrder); i++ {
		if seen[downOrder[i-1]] > seen[downOrder[i]] {
			t.Fatalf("spooled events replayed out of order at %d", i)
		}
	}
	// Events recorded while the spool still held events joined it, to keep order.
	if _, replayed := p.Stats(); replayed < 30 || replayed > 50 {
		t.Fatalf("replayed = %d, want 30 to 50", replayed)
	}
}

func TestRecord_SameEventTwiceIsStoredOnce(t *testing.T) {
	e := newNATSEnv(t)
	p := newPublisher(t, e, t.TempDir())
	ev := newEvent(1)
	for range 3 {
		if err := p.Record(context.Background(), ev); err != nil {
			t.Fatalf("record: %v", err)
		}
	}
	if got := e.stored(); len(got) != 1 || got[0] != ev.EventId {
		t.Fatalf("stream = %v, want only %s", got, ev.EventId)
	}
}

func TestSpool_SurvivesPublisherRestartAndIsReplayedOnce(t *testing.T) {
	e := newNATSEnv(t)
	dir := t.TempDir()
	p := newPublisher(t, e, dir)
	e.stop()
	var ids []string
	for i := range 10 {
		ev := newEvent(i)
		if err := p.Record(context.Background(), ev); err != nil {
			t.Fatalf("record: %v", err)
		}
		ids = append(ids, ev.EventId)
	}
	// The gateway stops while NATS is down: the spool stays on disk.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	cancel()
	// A torn record at the tail (a crash mid-append, never acknowledged) is cut off on open.
	f, err := os.OpenFile(filepath.Join(dir, "audit.spool"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte{0, 0, 1, 0, 9, 9})
	_ = f.Close()

	e.start()
	e.waitConnected()
	p2 := newPublisher(t, e, dir)
	if got := p2.Spooled(); got != 10 {
		t.Fatalf("reopened spool holds %d events, want 10", got)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	go p2.Run(rctx)
	waitSpoolEmpty(t, p2)
	got := e.stored()
	if len(got) != len(ids) {
		t.Fatalf("stream holds %d events, want %d", len(got), len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("event %d = %s, want %s (order)", i, got[i], ids[i])
		}
	}
	// A second start finds nothing left to replay.
	cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
	defer ccancel()
	if err := p2.Close(cctx); err != nil {
		t.Fatal(err)
	}
	p3 := newPublisher(t, e, dir)
	if p3.Spooled() != 0 {
		t.Fatalf("spool replayed twice: %d left", p3.Spooled())
	}
}

func TestDurable_FalseWhenNATSDownAndSpoolFull(t *testing.T) {
	e := newNATSEnv(t)
	p, err := auditpub.New(auditpub.Params{Conn: e.nc, JS: e.js, SpoolDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		AckTimeout: 200 * time.Millisecond, MaxSpoolBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Durable() {
		t.Fatal("not durable while NATS is up")
	}
	e.stop()
	var refused bool
	for i := range 20 {
		if err := p.Record(context.Background(), newEvent(i)); err != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("a full spool accepted every event")
	}
	if p.Durable() {
		t.Fatal("durable reported with NATS down and the spool full")
	}
}
