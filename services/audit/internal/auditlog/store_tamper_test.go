package auditlog_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/auditlog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/audittest"
	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"
)

// rewriteStream plays an attacker with write access to the NATS server: the audit stream
// is deleted (deny_delete/deny_purge only stop message-level removal) and recreated with
// the given bodies.
func rewriteStream(t *testing.T, e *audittest.Env, msgs []auditlog.RawRecord) {
	t.Helper()
	ctx := context.Background()
	if err := e.JS.DeleteStream(ctx, jsstore.AuditStream); err != nil {
		t.Fatal(err)
	}
	e.Store = e.NewStore(t)
	for _, m := range msgs {
		e.PublishRaw(t, m.Subject, m.Data)
	}
}

func TestTamper_StoreRewritesAreDetectedAndNamed(t *testing.T) {
	e := audittest.New(t)
	l := e.Open(t)
	stop := audittest.Run(t, l)
	for i := range 30 {
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "m", auditv1.Decision_DECISION_ALLOWED))
	}
	audittest.WaitCheckpointed(t, e, l)
	stop()
	ctx := context.Background()
	var orig []auditlog.RawRecord
	if err := e.Store.Read(ctx, 1, 30, func(r auditlog.RawRecord) error { orig = append(orig, r); return nil }); err != nil {
		t.Fatal(err)
	}
	clone := func() []auditlog.RawRecord { return append([]auditlog.RawRecord(nil), orig...) }

	// exportProblems reopens the log on the rewritten store and verifies a full export.
	exportProblems := func(t *testing.T) string {
		t.Helper()
		l, err := auditlog.New(ctx, e.Params(e.Store))
		if err != nil {
			t.Fatal(err)
		}
		s, err := audittest.Verify(t, audittest.Export(t, l, time.Time{}, time.Time{}), e.VKey)
		if !errors.Is(err, evidence.ErrTampered) {
			t.Fatalf("export of a tampered store verified: %v", err)
		}
		return strings.Join(s.Problems, "\n")
	}
	openErr := func(t *testing.T) error {
		t.Helper()
		_, err := auditlog.New(ctx, e.Params(e.Store))
		return err
	}

	t.Run("alter a field", func(t *testing.T) {
		ms := clone()
		ev := &auditv1.AuditEvent{}
		proto.Unmarshal(ms[5].Data, ev)
		ev.GetLlmCall().PrincipalId = "mallory"
		ms[5].Data, _ = proto.Marshal(ev)
		rewriteStream(t, e, ms)
		if p := exportProblems(t); !strings.Contains(p, "record 5: data does not match its leaf hash") {
			t.Fatalf("problems:\n%s", p)
		}
	})
	t.Run("delete a record", func(t *testing.T) {
		ms := clone()
		rewriteStream(t, e, append(ms[:9:9], ms[10:]...))
		if err := openErr(t); !errors.Is(err, auditlog.ErrLogTruncated) {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("delete a record and pad the end", func(t *testing.T) {
		ms := clone()
		rewriteStream(t, e, append(append(ms[:9:9], ms[10:]...), ms[0]))
		if p := exportProblems(t); !strings.Contains(p, "record 9: data does not match its leaf hash") {
			t.Fatalf("problems:\n%s", p)
		}
	})
	t.Run("reorder records", func(t *testing.T) {
		ms := clone()
		ms[3], ms[4] = ms[4], ms[3]
		rewriteStream(t, e, ms)
		if p := exportProblems(t); !strings.Contains(p, "record 3: data does not match") || !strings.Contains(p, "record 4: data does not match") {
			t.Fatalf("problems:\n%s", p)
		}
	})
	t.Run("insert a record", func(t *testing.T) {
		ms := clone()
		forged := auditlog.RawRecord{Subject: evidence.SubjectLLMCall, Data: mustMarshal(t, audittest.LLMCall(99, "mallory", "m", auditv1.Decision_DECISION_ALLOWED))}
		rewriteStream(t, e, append(ms[:12:12], append([]auditlog.RawRecord{forged}, ms[12:]...)...))
		if p := exportProblems(t); !strings.Contains(p, "record 12: data does not match") {
			t.Fatalf("problems:\n%s", p)
		}
	})
	t.Run("truncate the log", func(t *testing.T) {
		rewriteStream(t, e, clone()[:20])
		err := openErr(t)
		if !errors.Is(err, auditlog.ErrLogTruncated) || !strings.Contains(err.Error(), "stream last sequence 20, tree size 30") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("replace the latest checkpoint", func(t *testing.T) {
		rewriteStream(t, e, clone())
		if err := openErr(t); err != nil {
			t.Fatalf("restored store does not open: %v", err)
		}
		sk, _, _ := note.GenerateKey(rand.Reader, audittest.Origin)
		forger, _ := note.NewSigner(sk)
		signed, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: audittest.Origin, Size: 30, Root: make([]byte, 32), Time: time.Now()}, forger)
		if err := e.Store.PublishCheckpoint(ctx, 31, signed); err != nil {
			t.Fatal(err)
		}
		n, _ := e.Store.CheckpointCount(ctx)
		err := openErr(t)
		if !errors.Is(err, checkpoint.ErrBadSignature) || !strings.Contains(err.Error(), "stored checkpoint "+strconv.FormatUint(n, 10)) {
			t.Fatalf("open: %v", err)
		}
	})
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
