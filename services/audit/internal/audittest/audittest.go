// Package audittest starts the audit log against a real embedded NATS JetStream and a
// real Vault dev server for tests and benchmarks.
package audittest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
	"github.com/bulwarkhq/bulwark/services/audit/internal/vaultsign"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const Origin = "bulwark.audit/test"

// env is a real embedded NATS JetStream and a real Vault dev server with a transit key.
type Env struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Store  *jsstore.Store
	Signer *vaultsign.Signer
	VKey   string
}

func New(t testing.TB) *Env {
	t.Helper()
	ctx := context.Background()
	nc, js := platformtest.NATS(t)
	vs := platformtest.Vault(t)
	signer, err := vaultsign.New(ctx, vaultsign.Params{Client: vs.Client, Mount: "transit", Key: "checkpoints", Name: Origin, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := signer.VerifierKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{NC: nc, JS: js, Signer: signer, VKey: vkey}
	e.Store = e.NewStore(t)
	return e
}

func (e *Env) NewStore(t testing.TB) *jsstore.Store {
	t.Helper()
	st, err := jsstore.New(context.Background(), jsstore.Params{JS: e.JS, Retention: 400 * 24 * time.Hour, Duplicates: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *Env) Params(store auditlog.Store) auditlog.Params {
	pem, _ := e.Signer.PublicKeyPEM()
	return auditlog.Params{Store: store, Signer: e.Signer, VerifierKey: e.VKey, PublicKeyPEM: pem, Origin: Origin,
		CheckpointEvery: 100, CheckpointInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
}

func (e *Env) Open(t testing.TB) *auditlog.Log {
	t.Helper()
	l, err := auditlog.New(context.Background(), e.Params(e.Store))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// run ingests in the background until the test ends or stop is called.
func Run(t testing.TB, l *auditlog.Log) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func LLMCall(i int, principal, model string, d auditv1.Decision) *auditv1.AuditEvent {
	return &auditv1.AuditEvent{
		EventId: ulid.Make().String(), Time: timestamppb.Now(), Environment: "test", SourceService: "gateway",
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{
			RequestId: fmt.Sprintf("req-%d", i), PrincipalId: principal, TeamId: "team-a", ApiKeyId: "key-1",
			ModelRequested: model, ModelServed: model, Provider: "openai", Decision: d,
			RequestHmac: "00", InputTokens: int64(i), Status: 200,
		}},
	}
}

func AdminAction(actor string) *auditv1.AuditEvent {
	return &auditv1.AuditEvent{
		EventId: ulid.Make().String(), Time: timestamppb.Now(), Environment: "test", SourceService: "identity",
		Payload: &auditv1.AuditEvent_AdminAction{AdminAction: &auditv1.AdminAction{Actor: actor, Action: "identity.apikey.create", Target: "key-9"}},
	}
}

// publish sends an event as the publishers do: protobuf, Nats-Msg-Id = event id.
func (e *Env) Publish(t testing.TB, subject string, ev *auditv1.AuditEvent) {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.JS.Publish(context.Background(), subject, b, jetstream.WithMsgID(ev.GetEventId())); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) PublishRaw(t testing.TB, subject string, data []byte) {
	t.Helper()
	if _, err := e.JS.Publish(context.Background(), subject, data); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) StreamLast(t testing.TB) uint64 {
	t.Helper()
	_, last, err := e.Store.Bounds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// waitFor polls until cond holds or 20 s pass.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCheckpointed waits until the whole stream is in the tree and in a checkpoint.
func WaitCheckpointed(t testing.TB, e *Env, l *auditlog.Log) uint64 {
	t.Helper()
	var size uint64
	WaitFor(t, "checkpoint covering the stream", func() bool {
		last := e.StreamLast(t)
		cp, err := l.LatestCheckpoint(context.Background())
		size = cp.Size
		return err == nil && cp.Size == last && l.Size() == last
	})
	return size
}

func Export(t testing.TB, l *auditlog.Log, start, end time.Time) []byte {
	t.Helper()
	ctx := context.Background()
	plan, err := l.PlanExport(ctx, start, end)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Export(ctx, plan, start, end, &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bundleFiles reads a bundle into name → content, keeping the order.
func BundleFiles(t testing.TB, b []byte) ([]string, map[string][]byte) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		files[h.Name] = data
	}
	return names, files
}

func WriteBundle(t testing.TB, names []string, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write(files[n])
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func Verify(t testing.TB, b []byte, key string) (evidence.Summary, error) {
	t.Helper()
	return evidence.VerifyWith(bytes.NewReader(b), evidence.Options{TrustedKey: key})
}
