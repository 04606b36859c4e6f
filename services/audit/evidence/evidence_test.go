package evidence_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/oklog/ulid/v2"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const origin = "bulwark.audit/evidence-test"

// generate writes a bundle of n llm_call records, all of the log, signed with a fresh
// local key (the verifier only needs the public key; the service signs through Vault).
func generate(tb testing.TB, n int, w io.Writer) string {
	tb.Helper()
	ctx := context.Background()
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	signer, _ := note.NewSigner(skey)
	tree, _ := merklelog.Open(ctx, merklelog.NewMemStore())
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	data := make([][]byte, n)
	for i := range n {
		ev := &auditv1.AuditEvent{EventId: ulid.Make().String(), Time: timestamppb.New(base.Add(time.Duration(i) * time.Millisecond)),
			Environment: "prod", SourceService: "gateway", Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{
				RequestId: "req-" + strconv.Itoa(i), PrincipalId: "user-" + strconv.Itoa(i%100), TeamId: "team-1", ApiKeyId: "key-" + strconv.Itoa(i%10),
				ModelRequested: "gpt-4o", ModelServed: "gpt-4o-2024-08-06", Provider: "openai", Decision: auditv1.Decision_DECISION_ALLOWED,
				RequestHmac: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", ResponseHmac: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
				InputTokens: 120, OutputTokens: 480, CostMicros: 5100, LatencyMs: 830, Status: 200}}}
		data[i], _ = proto.Marshal(ev)
		tree.Append(merklelog.LeafHash(data[i]))
		if (i+1)%(n/4+1) == 0 {
			tree.Commit(ctx, uint64(i+1))
		}
	}
	tree.Commit(ctx, uint64(n))
	var cps []evidence.CheckpointEntry
	var sizes []uint64
	for _, sz := range []uint64{uint64(n / 2), uint64(n)} {
		root, _ := tree.RootAt(ctx, sz)
		c := checkpoint.Checkpoint{Origin: origin, Size: sz, Root: root, Time: base.Add(time.Hour)}
		signed, err := checkpoint.Sign(c, signer)
		if err != nil {
			tb.Fatal(err)
		}
		cps = append(cps, evidence.CheckpointEntry{TreeSize: sz, RootHash: root, Time: c.Time, SignedNote: string(signed)})
		sizes = append(sizes, sz)
	}
	cons, _ := tree.ConsistencyProof(ctx, sizes[0], sizes[1])
	m := evidence.Manifest{Origin: origin, FirstIndex: 0, EndIndex: uint64(n), ProofTreeSize: uint64(n), Created: base.Add(2 * time.Hour), VerifierKey: vkey, Format: evidence.Format}
	mnote, _ := note.Sign(&note.Note{Text: m.NoteText()}, signer)
	bw := evidence.NewWriter(w)
	if err := bw.WriteHeader(evidence.Header{Manifest: m, ManifestNote: mnote, Checkpoints: cps,
		Consistency: []evidence.ConsistencyEntry{{FromSize: sizes[0], ToSize: sizes[1], Proof: cons}}}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		ev := &auditv1.AuditEvent{}
		proto.Unmarshal(data[i], ev)
		js, _ := protojson.Marshal(ev)
		js = compact(js)
		p, err := tree.InclusionProof(ctx, uint64(i), uint64(n))
		if err != nil {
			tb.Fatal(err)
		}
		if err := bw.WriteRecord(&evidence.Record{Index: uint64(i), Subject: evidence.SubjectLLMCall, ReceiveTime: base.Add(time.Duration(i) * time.Millisecond),
			Kind: evidence.KindLLMCall, Data: data[i], LeafHash: merklelog.LeafHash(data[i]), Event: js, InclusionProof: evidence.JoinProof(p)}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		tb.Fatal(err)
	}
	return vkey
}

func TestVerify_AcceptsAnIntactBundleAcrossRecordFiles(t *testing.T) {
	var buf bytes.Buffer
	n := evidence.RecordsPerFile + 17
	vkey := generate(t, n, &buf)
	s, err := evidence.VerifyWith(bytes.NewReader(buf.Bytes()), evidence.Options{TrustedKey: vkey})
	if err != nil {
		t.Fatal(err, s.Problems)
	}
	if s.Records != uint64(n) || s.Checkpoints != 2 || s.ByKind[evidence.KindLLMCall] != uint64(n) || s.KeyFromBundle {
		t.Fatalf("summary: %+v", s)
	}
	s, err = evidence.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil || !s.KeyFromBundle {
		t.Fatalf("self-key verification: %v, from bundle %v", err, s.KeyFromBundle)
	}
}

func TestVerify_RejectsWhatIsNotABundle(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("hello"), {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0}} {
		if _, err := evidence.Verify(bytes.NewReader(in)); !errors.Is(err, evidence.ErrUnreadable) {
			t.Fatalf("%q: %v", in, err)
		}
	}
}

// FuzzVerify flips bytes of a valid bundle: verification must fail cleanly, never panic
// and never accept a changed bundle whose records changed.
func FuzzVerify(f *testing.F) {
	var buf bytes.Buffer
	vkey := generate(f, 40, &buf)
	valid := buf.Bytes()
	f.Add(0, byte(1))
	f.Add(len(valid)/2, byte(0x80))
	f.Fuzz(func(t *testing.T, pos int, x byte) {
		if pos < 0 || x == 0 {
			return
		}
		b := append([]byte(nil), valid...)
		b[pos%len(b)] ^= x
		_, _ = evidence.VerifyWith(bytes.NewReader(b), evidence.Options{TrustedKey: vkey})
	})
}

func FuzzDecode(f *testing.F) {
	ev, _ := proto.Marshal(&auditv1.AuditEvent{EventId: ulid.Make().String(), Time: timestamppb.Now(), SourceService: "gateway",
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{RequestId: "r", Decision: auditv1.Decision_DECISION_ALLOWED}}})
	f.Add(evidence.SubjectLLMCall, ev)
	f.Add(evidence.SubjectAnomaly, []byte{0x0a, 0x02, 'x', 'y'})
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		kind, msg, err := evidence.Decode(subject, data)
		if err == nil && (msg == nil || kind == evidence.KindInvalid) {
			t.Fatal("accepted without a message")
		}
		if err != nil && kind != evidence.KindInvalid {
			t.Fatal("rejected with a valid kind")
		}
	})
}

// BenchmarkVerify_Bundle verifies a generated bundle of AUDIT_BENCH_RECORDS records
// (default 1,000,000). The bundle is generated once, outside the timer.
func BenchmarkVerify_Bundle(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	// AUDIT_BENCH_BUNDLE keeps the bundle (and its key in <path>.key) for a tool run:
	// bulwarkctl audit verify <path> --key-file <path>.key
	path := os.Getenv("AUDIT_BENCH_BUNDLE")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bundle.tar.gz")
	}
	fh, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	vkey := generate(b, n, fh)
	if err := fh.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path+".key", []byte(vkey+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.ReportMetric(float64(st.Size())/1e6, "bundle_MB")
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for b.Loop() {
		fh, _ := os.Open(path)
		s, err := evidence.VerifyWith(fh, evidence.Options{TrustedKey: vkey})
		fh.Close()
		if err != nil || s.Records != uint64(n) {
			b.Fatal(err, s.Records)
		}
	}
	b.StopTimer()
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
	b.ReportMetric(cpu.Seconds(), "cpu_s/op")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// FuzzParseRecordFast: whenever the fast path accepts a line, encoding/json reads the same
// record from it.
func FuzzParseRecordFast(f *testing.F) {
	f.Add([]byte(`{"index":3,"subject":"bulwark.audit.v1.llm_call","receive_time":"2026-01-01T00:00:00Z","kind":"llm_call","data":"AAE=","leaf_hash":"AAE=","event":{"a":"b"},"inclusion_proof":"AAE="}`))
	f.Add([]byte(`{"index":3,"subject":"s","receive_time":"2026-01-01T00:00:00Z","kind":"invalid","data":"","leaf_hash":"","invalid":"bad","inclusion_proof":""}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, ok := evidence.ParseRecordFast(line)
		if !ok || (r.Event != nil && !json.Valid(r.Event)) {
			return // an invalid event is rejected by the event check, not the parser
		}
		var want evidence.Record
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("fast path accepted what encoding/json rejects: %v", err)
		}
		if r.Index != want.Index || r.Subject != want.Subject || !r.ReceiveTime.Equal(want.ReceiveTime) || r.Kind != want.Kind ||
			!bytes.Equal(r.Data, want.Data) || !bytes.Equal(r.LeafHash, want.LeafHash) || r.Invalid != want.Invalid ||
			!bytes.Equal(r.InclusionProof, want.InclusionProof) || !jsonEqual(r.Event, want.Event) {
			t.Fatalf("fast path read %+v, encoding/json %+v", r, want)
		}
	})
}

func jsonEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.Bytes()
}
