package auditlog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/audittest"
	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"
)

func TestIngest_RecordsEveryMessageInStreamOrderWithProofs(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	ctx := context.Background()
	for i := range 30 {
		d := auditv1.Decision_DECISION_ALLOWED
		if i%3 == 0 {
			d = auditv1.Decision_DECISION_DENIED_POLICY
		}
		p := "alice"
		if i%2 == 0 {
			p = "bob"
		}
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, p, "gpt-4o", d))
	}
	e.Publish(t, evidence.SubjectAdminAction, audittest.AdminAction("carol"))
	size := audittest.WaitCheckpointed(t, e, l)
	if size != 31 {
		t.Fatalf("tree size %d, want 31", size)
	}
	cp, _ := l.LatestCheckpoint(ctx)
	for i := range size {
		pr, err := l.GetRecord(ctx, i, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Record.Index != i || !bytes.Equal(pr.Record.LeafHash, merklelog.LeafHash(pr.Record.Data)) {
			t.Fatalf("record %d: wrong index or leaf hash", i)
		}
		if err := proof.VerifyInclusion(merklelog.Hasher, i, cp.Size, pr.Record.LeafHash, pr.Proof, cp.Root); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	// The checkpoint note verifies with the public key alone.
	v, _ := note.NewVerifier(e.VKey)
	if _, err := checkpoint.Open(cp.Note, v, audittest.Origin); err != nil {
		t.Fatal(err)
	}

	recs, next, err := l.Query(ctx, auditlog.Filter{Principal: "bob", Decision: auditv1.Decision_DECISION_DENIED_POLICY})
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	if len(recs) != 5 { // i in {0,6,12,18,24}
		t.Fatalf("bob denied by policy: %d records, want 5", len(recs))
	}
	for _, r := range recs {
		c := r.Message.(*auditv1.AuditEvent).GetLlmCall()
		if c.GetPrincipalId() != "bob" || c.GetDecision() != auditv1.Decision_DECISION_DENIED_POLICY {
			t.Fatalf("record %d does not match the filter", r.Index)
		}
	}
	// Paging walks every record once, oldest first.
	var seen []uint64
	tok := ""
	for {
		page, nt, err := l.Query(ctx, auditlog.Filter{Kind: "llm_call", Limit: 7, After: mustToken(t, tok)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seen = append(seen, r.Index)
		}
		if nt == "" {
			break
		}
		tok = nt
	}
	if len(seen) != 30 || seen[0] != 0 || seen[29] != 29 {
		t.Fatalf("paged llm_call records: %v", seen)
	}
	admin, _, _ := l.Query(ctx, auditlog.Filter{Kind: "admin_action"})
	if len(admin) != 1 || admin[0].Index != 30 {
		t.Fatalf("admin actions: %d", len(admin))
	}
	byReq, _, _ := l.Query(ctx, auditlog.Filter{RequestID: "req-7"})
	if len(byReq) != 1 || byReq[0].Index != 7 {
		t.Fatalf("request_id query: %d records", len(byReq))
	}
	ev := admin[0].Message.(*auditv1.AuditEvent)
	byID, err := l.GetRecord(ctx, 0, ev.GetEventId(), 0)
	if err != nil || byID.Record.Index != 30 {
		t.Fatalf("GetRecord by event id: %v", err)
	}
	// Consistency between any two checkpointed sizes.
	first, err := l.CheckpointAtLeast(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := l.ConsistencyProof(ctx, first.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(merklelog.Hasher, first.Size, cp.Size, cons, first.Root, cp.Root); err != nil {
		t.Fatal(err)
	}
}

func mustToken(t *testing.T, tok string) uint64 {
	n, err := auditlog.ParsePageToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIngest_MalformedMessageIsDeadLetteredNotDropped(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	ctx := context.Background()
	e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(1, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
	e.PublishRaw(t, evidence.SubjectLLMCall, []byte("not protobuf \xff\xff"))
	bad := audittest.LLMCall(2, "alice", "m", auditv1.Decision_DECISION_UNSPECIFIED)
	e.Publish(t, evidence.SubjectLLMCall, bad)
	audittest.WaitFor(t, "two dead letters", func() bool { return e.StreamLast(t) == 5 })
	audittest.WaitCheckpointed(t, e, l)

	inv, _, _ := l.Query(ctx, auditlog.Filter{Kind: evidence.KindInvalid})
	if len(inv) != 2 || inv[0].Index != 1 || inv[1].Index != 2 || inv[0].Invalid == "" {
		t.Fatalf("invalid records: %+v", inv)
	}
	dls, _, _ := l.Query(ctx, auditlog.Filter{Kind: evidence.KindDeadLetter})
	if len(dls) != 2 {
		t.Fatalf("dead letters: %d, want 2", len(dls))
	}
	for i, r := range dls {
		dl := r.Message.(*auditv1.DeadLetter)
		if dl.GetStreamSequence() != uint64(i+2) || dl.GetReason() == "" || dl.GetSubject() != evidence.SubjectLLMCall {
			t.Fatalf("dead letter %d: %v", i, dl)
		}
		orig, _ := l.GetRecord(ctx, dl.GetStreamSequence()-1, "", 0)
		if !bytes.Equal(orig.Record.Data, dl.GetData()) {
			t.Fatal("dead letter does not carry the original bytes")
		}
	}
}

func TestIngest_RepublishedEventIDIsStoredOnce(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	ev := audittest.LLMCall(1, "alice", "m", auditv1.Decision_DECISION_ALLOWED)
	for range 3 {
		e.Publish(t, evidence.SubjectLLMCall, ev)
	}
	e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(2, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
	if size := audittest.WaitCheckpointed(t, e, l); size != 2 {
		t.Fatalf("tree size %d, want 2", size)
	}
}

// crashingStore fails the tree-state write after n successful ones: the process "dies"
// between storing tiles and index and storing the state.
type crashingStore struct {
	auditlog.Store
	n      int
	cancel func()
}

func (c *crashingStore) PutState(ctx context.Context, s merklelog.State) error {
	if c.n == 0 {
		c.cancel()
		return errors.New("crash")
	}
	c.n--
	return c.Store.PutState(ctx, s)
}

func TestCrash_RestartResumesWithoutLossOrDuplication(t *testing.T) {
	e := audittest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := e.Params(&crashingStore{Store: e.Store, n: 3, cancel: cancel})
	p.BatchSize = 50
	l1, err := auditlog.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	const total = 2000
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range total {
			e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
		}
	}()
	_ = l1.Run(ctx) // returns when the store "crashes"
	crashedAt := l1.Size()
	if crashedAt >= total {
		t.Fatalf("crash came too late (size %d)", crashedAt)
	}

	// Restart on the real store while publishing continues; a second crash-free run.
	l2 := e.Open(t)
	if l2.Size() != crashedAt {
		t.Fatalf("restart at size %d, want the committed %d", l2.Size(), crashedAt)
	}
	audittest.Run(t, l2)
	<-pubDone
	size := audittest.WaitCheckpointed(t, e, l2)
	if size != total {
		t.Fatalf("tree size %d after restart, want %d (lost or doubled)", size, total)
	}
	// Every leaf is the stream message of the same position, once.
	seen := map[string]bool{}
	after := uint64(0)
	for {
		recs, next, err := l2.Query(context.Background(), auditlog.Filter{Limit: 1000, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			id := r.Message.(*auditv1.AuditEvent).GetEventId()
			if seen[id] {
				t.Fatalf("event %s recorded twice", id)
			}
			seen[id] = true
		}
		if next == "" {
			break
		}
		after = mustToken(t, next)
	}
	if len(seen) != total {
		t.Fatalf("%d distinct events recorded, want %d", len(seen), total)
	}
	// Every checkpoint ever published is consistent with the next.
	assertCheckpointChain(t, e, l2)
	if s, err := audittest.Verify(t, audittest.Export(t, l2, time.Time{}, time.Time{}), e.VKey); err != nil || s.Records != total {
		t.Fatalf("export after crash: %v (%d records)", err, s.Records)
	}
}

func assertCheckpointChain(t *testing.T, e *audittest.Env, l *auditlog.Log) {
	t.Helper()
	ctx := context.Background()
	n, err := e.Store.CheckpointCount(ctx)
	if err != nil || n == 0 {
		t.Fatalf("checkpoints: %d, %v", n, err)
	}
	v, _ := note.NewVerifier(e.VKey)
	var prev *checkpoint.Checkpoint
	for i := uint64(1); i <= n; i++ {
		b, err := e.Store.CheckpointAt(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		c, err := checkpoint.Open(b, v, audittest.Origin)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if prev != nil {
			if c.Size < prev.Size {
				t.Fatalf("checkpoint %d shrinks the tree", i)
			}
			p, err := l.ConsistencyProof(ctx, prev.Size, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(merklelog.Hasher, prev.Size, c.Size, p, prev.Root, c.Root); err != nil {
				t.Fatalf("checkpoint %d (size %d) inconsistent with %d: %v", i, c.Size, prev.Size, err)
			}
		}
		prev = &c
	}
}

func TestExport_BundleVerifiesOfflineAndCoversTheTimeRange(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	for i := range 40 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	for i := range 25 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(100+i, "bob", "m", auditv1.Decision_DECISION_ALLOWED))
	}
	e.PublishRaw(t, evidence.SubjectAdminAction, []byte{0x0a, 0x01})
	audittest.WaitCheckpointed(t, e, l)

	s, err := audittest.Verify(t, audittest.Export(t, l, time.Time{}, time.Time{}), e.VKey)
	if err != nil {
		t.Fatal(err, s.Problems)
	}
	if s.Records != 67 || s.ByKind["llm_call"] != 65 || s.ByKind["invalid"] != 1 || s.ByKind["dead_letter"] != 1 || s.KeyFromBundle {
		t.Fatalf("summary %+v", s)
	}
	s, err = audittest.Verify(t, audittest.Export(t, l, mid, time.Time{}), e.VKey)
	if err != nil {
		t.Fatal(err, s.Problems)
	}
	if s.FirstIndex != 40 || s.Records != 27 {
		t.Fatalf("range export: first %d, %d records", s.FirstIndex, s.Records)
	}
	// A bundle checked with another key is rejected.
	_, other, _ := note.GenerateKey(rand.Reader, audittest.Origin)
	if _, err := audittest.Verify(t, audittest.Export(t, l, mid, time.Time{}), other); !errors.Is(err, evidence.ErrTampered) {
		t.Fatalf("bundle verified with a foreign key: %v", err)
	}
}

// recordLines returns the records file's lines.
func recordLines(files map[string][]byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(files["records/000000.jsonl"], []byte("\n")), []byte("\n"))
}

func setLines(files map[string][]byte, lines [][]byte) {
	files["records/000000.jsonl"] = append(bytes.Join(lines, []byte("\n")), '\n')
}

func TestTamper_BundleChangesAreDetectedAndNamed(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	for i := range 20 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "gpt-4o", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	for i := range 20 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(20+i, "alice", "gpt-4o", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	bundle := audittest.Export(t, l, time.Time{}, time.Time{})
	if _, err := audittest.Verify(t, bundle, e.VKey); err != nil {
		t.Fatal(err)
	}
	otherSigner, _, _ := note.GenerateKey(rand.Reader, audittest.Origin)
	forger, _ := note.NewSigner(otherSigner)

	cases := []struct {
		name   string
		tamper func(map[string][]byte)
		want   string
	}{
		{"alter a field of the decoded event", func(f map[string][]byte) {
			ls := recordLines(f)
			ls[5] = bytes.Replace(ls[5], []byte(`"alice"`), []byte(`"mallory"`), 1)
			setLines(f, ls)
		}, "record 5: the decoded event differs"},
		{"alter the hashed bytes and recompute the leaf hash", func(f map[string][]byte) {
			ls := recordLines(f)
			r := decodeRecord(t, ls[7])
			ev := &auditv1.AuditEvent{}
			proto.Unmarshal(r.Data, ev)
			ev.GetLlmCall().PrincipalId = "mallory"
			r.Data, _ = proto.Marshal(ev)
			r.LeafHash = merklelog.LeafHash(r.Data)
			ls[7] = encodeRecord(t, r)
			setLines(f, ls)
		}, "record 7: the decoded event differs"},
		{"delete a record", func(f map[string][]byte) {
			ls := recordLines(f)
			setLines(f, append(ls[:9:9], ls[10:]...))
		}, "record 9 is missing"},
		{"reorder two records", func(f map[string][]byte) {
			ls := recordLines(f)
			ls[3], ls[4] = ls[4], ls[3]
			setLines(f, ls)
		}, "record 3 is out of order"},
		{"insert a record", func(f map[string][]byte) {
			ls := recordLines(f)
			r := decodeRecord(t, ls[11])
			r.Data = append(r.Data, 0x78, 0x01) // an extra varint field 15
			r.LeafHash = merklelog.LeafHash(r.Data)
			ins := encodeRecord(t, r)
			setLines(f, append(ls[:12:12], append([][]byte{ins}, ls[12:]...)...))
		}, "record 11"},
		{"truncate the records", func(f map[string][]byte) {
			ls := recordLines(f)
			setLines(f, ls[:30])
		}, "records 30 to 39 are missing"},
		{"truncate and rewrite the manifest", func(f map[string][]byte) {
			ls := recordLines(f)
			setLines(f, ls[:30])
			f["manifest.json"] = bytes.Replace(f["manifest.json"], []byte(`"end_index": 40`), []byte(`"end_index": 30`), 1)
		}, "manifest.json differs from the signed manifest.note"},
		{"replace a checkpoint with a forged one", func(f map[string][]byte) {
			ls := bytes.Split(bytes.TrimSpace(f["checkpoints.jsonl"]), []byte("\n"))
			var c evidence.CheckpointEntry
			mustJSON(t, ls[0], &c)
			cp := checkpoint.Checkpoint{Origin: audittest.Origin, Size: c.TreeSize, Root: make([]byte, 32), Time: c.Time}
			signed, _ := checkpoint.Sign(cp, forger)
			c.SignedNote, c.RootHash = string(signed), cp.Root
			ls[0] = toJSON(t, c)
			f["checkpoints.jsonl"] = append(bytes.Join(ls, []byte("\n")), '\n')
		}, "checkpoint 1 (tree size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			names, files := audittest.BundleFiles(t, bundle)
			tc.tamper(files)
			s, err := audittest.Verify(t, audittest.WriteBundle(t, names, files), e.VKey)
			if !errors.Is(err, evidence.ErrTampered) {
				t.Fatalf("tampered bundle verified: %v", err)
			}
			if !strings.Contains(strings.Join(s.Problems, "\n"), tc.want) {
				t.Fatalf("problems do not name %q:\n%s", tc.want, strings.Join(s.Problems, "\n"))
			}
		})
	}
}

func TestOpen_RebuildsTheQueryIndexFromRecordsWhenIndexBatchesAreGone(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	stop := audittest.Run(t, l)
	for i := range 50 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, []string{"alice", "bob"}[i%2], "m", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	stop()
	ctx := context.Background()
	count := func(l *auditlog.Log) int {
		recs, _, err := l.Query(ctx, auditlog.Filter{Principal: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	if n := count(e.Open(t)); n != 25 {
		t.Fatalf("index from batches: %d bob records, want 25", n)
	}
	if err := e.JS.DeleteStream(ctx, jsstore.IndexStream); err != nil {
		t.Fatal(err)
	}
	e.Store = e.NewStore(t)
	l2 := e.Open(t)
	if n := count(l2); n != 25 {
		t.Fatalf("index rebuilt from records: %d bob records, want 25", n)
	}
	// New batches now start mid-log: the next start still indexes everything.
	stop = audittest.Run(t, l2)
	for i := range 10 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(100+i, "bob", "m", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l2)
	stop()
	if n := count(e.Open(t)); n != 35 {
		t.Fatalf("after a partial index stream: %d bob records, want 35", n)
	}
}
