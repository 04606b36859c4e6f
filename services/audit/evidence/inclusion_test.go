package evidence

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/transparency-dev/merkle/proof"
)

// TestPathCache_AgreesWithVerifyInclusion runs sequences of valid and corrupted proofs
// (wrong leaf, flipped proof byte, wrong index, short proof) through one cache and checks
// every answer against proof.VerifyInclusion.
func TestPathCache_AgreesWithVerifyInclusion(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []uint64{1, 2, 3, 7, 8, 9, 255, 256, 257, 1000, 1023} {
		tr, _ := merklelog.Open(ctx, merklelog.NewMemStore())
		leaves := make([][]byte, size)
		for i := range size {
			leaves[i] = merklelog.LeafHash([]byte{byte(i), byte(i >> 8), byte(size)})
			tr.Append(leaves[i])
		}
		tr.Commit(ctx, size)
		root := tr.Root()
		c := newPathCache(size, root)
		for step := 0; step < 6000; step++ {
			i := uint64(step) % size
			if rng.IntN(4) == 0 {
				i = rng.Uint64N(size)
			}
			p, err := tr.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf, idx := leaves[i], i
			switch rng.IntN(8) {
			case 0:
				leaf = leaves[(i+1)%size]
			case 1:
				if len(p) > 0 {
					k := rng.IntN(len(p))
					b := append([]byte(nil), p[k]...)
					b[rng.IntN(32)] ^= 1
					p[k] = b
				}
			case 2:
				idx = (i + 1) % size
			case 3:
				if len(p) > 0 {
					p = p[:len(p)-1]
				}
			case 4: // a proof hash replaced by another node of the same path or proof
				if len(p) > 1 {
					p[rng.IntN(len(p))] = p[rng.IntN(len(p))]
				}
			case 5:
				if len(p) > 0 {
					p[rng.IntN(len(p))] = leaf
				}
			}
			want := proof.VerifyInclusion(merklelog.Hasher, idx, size, leaf, p, root) == nil
			if got := c.verify(idx, leaf, p); got != want {
				t.Fatalf("size %d, leaf %d (as %d): cache says %v, VerifyInclusion %v", size, i, idx, got, want)
			}
		}
	}
}
