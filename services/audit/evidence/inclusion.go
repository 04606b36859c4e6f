package evidence

import (
	"bytes"
	"math/bits"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// pathCache verifies RFC 6962 inclusion proofs against one tree size and root, remembering
// the last proven path: each node on it and the proof hash (sibling) that produced it.
// Consecutive leaves share all but their lowest nodes, so a record's proof is usually
// settled after a hash or two: once the node computed at some level is the remembered
// (authenticated) node there, the leaf is included provided every remaining proof hash is
// the remembered sibling; a different node there means it is not. Anything else falls
// back to proof.VerifyInclusion, so the answer is always that of VerifyInclusion (the tests
// check it on valid and corrupted proofs). Not safe for concurrent use.
type pathCache struct {
	size uint64
	root []byte
	slot [66]pathNode
	pend []pathNode
}

type pathNode struct {
	level int
	idx   uint64
	hash  []byte
	sib   []byte
	left  bool // sib is the left child: the path came up through the right child
}

type pathStep struct {
	level int
	idx   uint64
	left  bool // the proof hash is the left child
}

func newPathCache(size uint64, root []byte) *pathCache { return &pathCache{size: size, root: root} }

// verify reports whether proof proves leaf at index in the tree.
func (c *pathCache) verify(index uint64, leaf []byte, p [][]byte) bool {
	if index >= c.size || len(leaf) != 32 {
		return false
	}
	inner := bits.Len64(index ^ (c.size - 1))
	border := bits.OnesCount64(index >> uint(inner))
	if len(p) != inner+border {
		return false
	}
	var steps [64]pathStep
	for i := 0; i < inner; i++ {
		steps[i] = pathStep{level: i + 1, idx: index >> uint(i+1), left: (index>>uint(i))&1 == 1}
	}
	m, k := index>>uint(inner), inner
	for j := 0; k < len(p); j++ {
		if (m>>uint(j))&1 == 1 {
			steps[k] = pathStep{level: inner + j + 1, idx: m >> uint(j+1), left: true}
			k++
		}
	}
	h := rfc6962.DefaultHasher
	seed := leaf
	c.pend = c.pend[:0]
	for k, st := range steps[:len(p)] {
		if len(p[k]) != 32 {
			return false
		}
		if st.left {
			seed = h.HashChildren(p[k], seed)
		} else {
			seed = h.HashChildren(seed, p[k])
		}
		c.pend = append(c.pend, pathNode{st.level, st.idx, seed, p[k], st.left})
		s := &c.slot[st.level]
		if s.hash == nil || s.idx != st.idx {
			continue
		}
		if !bytes.Equal(s.hash, seed) {
			return c.done(false)
		}
		for k2 := k + 1; k2 < len(p); k2++ {
			up := &c.slot[steps[k2].level]
			if up.hash == nil || up.idx != steps[k2].idx || up.left != steps[k2].left || !bytes.Equal(up.sib, p[k2]) {
				return c.done(proof.VerifyInclusion(h, index, c.size, leaf, p, c.root) == nil)
			}
		}
		return c.done(true)
	}
	return c.done(bytes.Equal(seed, c.root))
}

// done remembers the computed nodes when the proof held.
func (c *pathCache) done(ok bool) bool {
	if ok {
		for _, n := range c.pend {
			c.slot[n.level] = n
		}
	}
	c.pend = c.pend[:0]
	return ok
}
