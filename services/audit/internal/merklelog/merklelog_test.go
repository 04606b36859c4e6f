package merklelog

import (
	"context"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
)

func leaf(i int) []byte { return LeafHash([]byte(fmt.Sprintf("record %d", i))) }

func TestTree_ProofsVerifyAtEverySize(t *testing.T) {
	ctx := context.Background()
	tr, err := Open(ctx, NewMemStore())
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	roots := map[uint64][]byte{}
	for i := range n {
		if _, err := tr.Append(leaf(i)); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 || i == n-1 {
			if err := tr.Commit(ctx, uint64(i+1)); err != nil {
				t.Fatal(err)
			}
			roots[tr.Size()] = tr.Root()
		}
	}
	for size, root := range roots {
		got, err := tr.RootAt(ctx, size)
		if err != nil || string(got) != string(root) {
			t.Fatalf("RootAt(%d) = %x, %v; want %x", size, got, err, root)
		}
		for _, idx := range []uint64{0, size / 2, size - 1} {
			p, err := tr.InclusionProof(ctx, idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(Hasher, idx, size, leaf(int(idx)), p, root); err != nil {
				t.Fatalf("inclusion %d in %d: %v", idx, size, err)
			}
		}
		for small, sroot := range roots {
			if small > size {
				continue
			}
			p, err := tr.ConsistencyProof(ctx, small, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(Hasher, small, size, p, sroot, root); err != nil {
				t.Fatalf("consistency %d→%d: %v", small, size, err)
			}
		}
	}
}

func TestTree_ResumesFromStoreWithoutRehashingLeaves(t *testing.T) {
	ctx := context.Background()
	st := NewMemStore()
	tr, _ := Open(ctx, st)
	for i := range 300 {
		tr.Append(leaf(i))
	}
	if err := tr.Commit(ctx, 300); err != nil {
		t.Fatal(err)
	}
	// Uncommitted appends are lost on restart, as a crash would lose them.
	tr.Append(leaf(300))

	tr2, err := Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if tr2.Size() != 300 || tr2.Committed().Cursor != 300 {
		t.Fatalf("resumed at size %d cursor %d, want 300/300", tr2.Size(), tr2.Committed().Cursor)
	}
	for i := 300; i < 700; i++ {
		tr2.Append(leaf(i))
	}
	tr2.Commit(ctx, 700)

	ref, _ := Open(ctx, NewMemStore())
	for i := range 700 {
		ref.Append(leaf(i))
	}
	ref.Commit(ctx, 700)
	if string(ref.Root()) != string(tr2.Root()) {
		t.Fatal("resumed tree root differs from a tree built in one run")
	}
	// Proofs for the resumed tree come from tiles written by both runs (a fresh tree reads them).
	tr3, _ := Open(ctx, st)
	for _, idx := range []uint64{0, 255, 256, 299, 300, 511, 699} {
		p, err := tr3.InclusionProof(ctx, idx, 700)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(Hasher, idx, 700, leaf(int(idx)), p, ref.Root()); err != nil {
			t.Fatalf("leaf %d: %v", idx, err)
		}
	}
}

func TestTree_RollbackDropsStagedLeaves(t *testing.T) {
	ctx := context.Background()
	tr, _ := Open(ctx, NewMemStore())
	tr.Append(leaf(0))
	tr.Commit(ctx, 1)
	root := tr.Root()
	tr.Append(leaf(1))
	if err := tr.Rollback(); err != nil {
		t.Fatal(err)
	}
	if tr.Staged() != 1 || string(tr.Root()) != string(root) {
		t.Fatalf("staged %d after rollback, want 1", tr.Staged())
	}
	if _, err := tr.InclusionProof(ctx, 1, 2); err == nil {
		t.Fatal("proof beyond the committed tree was served")
	}
}

func BenchmarkInclusionProof(b *testing.B) {
	ctx := context.Background()
	tr, _ := Open(ctx, NewMemStore())
	const n = 1 << 20
	for i := range n {
		tr.Append(leaf(i))
	}
	tr.Commit(ctx, n)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		idx := uint64(i*7919) % n
		if _, err := tr.InclusionProof(ctx, idx, n); err != nil {
			b.Fatal(err)
		}
	}
}
