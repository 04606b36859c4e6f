package jsstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/audit/internal/jsstore"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/transparency-dev/merkle/proof"
)

func TestNew_AuditStreamIsAppendOnlyWithRetentionAndDedup(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	if _, err := jsstore.New(ctx, jsstore.Params{JS: js, Retention: 400 * 24 * time.Hour, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, jsstore.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.MaxAge != 400*24*time.Hour || cfg.Duplicates != 10*time.Minute || cfg.Storage.String() != "File" {
		t.Fatalf("stream config: %+v", cfg)
	}
	if len(cfg.Subjects) != 2 || cfg.Subjects[0] != "bulwark.audit.v1.>" || cfg.Subjects[1] != "bulwark.ratelimit.v1.>" {
		t.Fatalf("subjects: %v", cfg.Subjects)
	}
	if _, err := js.Publish(ctx, "bulwark.audit.v1.llm_call", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("a record was deleted from the audit stream")
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("the audit stream was purged")
	}
	cps, _ := js.Stream(ctx, jsstore.CheckpointStream)
	if c := cps.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge || c.MaxAge != 0 {
		t.Fatalf("checkpoints are not kept forever: %+v", c)
	}
	// Re-running New on existing assets is harmless (every start does it).
	if _, err := jsstore.New(ctx, jsstore.Params{JS: js, Retention: 400 * 24 * time.Hour, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
}

func TestTreeStore_TreeResumesFromJetStreamTiles(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	st, err := jsstore.New(ctx, jsstore.Params{JS: js, Retention: time.Hour, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(i int) []byte { return merklelog.LeafHash([]byte{byte(i), byte(i >> 8)}) }
	tr, err := merklelog.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		tr.Append(leaf(i))
		if i%300 == 299 {
			if err := tr.Commit(ctx, uint64(i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr.Commit(ctx, 1000)
	root := tr.Root()
	// A fresh process: state and tiles come from JetStream only.
	st2, _ := jsstore.New(ctx, jsstore.Params{JS: js, Retention: time.Hour, Duplicates: time.Minute})
	tr2, err := merklelog.Open(ctx, st2)
	if err != nil {
		t.Fatal(err)
	}
	if tr2.Size() != 1000 || string(tr2.Root()) != string(root) || tr2.Committed().Cursor != 1000 {
		t.Fatalf("resumed size %d", tr2.Size())
	}
	for _, i := range []uint64{0, 299, 512, 999} {
		p, err := tr2.InclusionProof(ctx, i, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(merklelog.Hasher, i, 1000, leaf(int(i)), p, root); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
}
