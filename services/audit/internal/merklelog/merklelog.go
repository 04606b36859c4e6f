// Package merklelog is the audit log's verifiable data structure: an append-only RFC 6962
// Merkle tree whose node hashes are kept in fixed-size tiles, with inclusion and
// consistency proofs. It knows nothing of NATS or Vault: persistence goes through the
// Store interface it declares, so a restart resumes from the stored compact range and
// tiles without rehashing any leaf.
package merklelog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TileWidth is the number of node hashes in a full tile.
const TileWidth = 256

// HashSize is the size of every node hash.
const HashSize = sha256.Size

// Hasher is the RFC 6962 SHA-256 hasher used for every hash in the log.
var Hasher = rfc6962.DefaultHasher

// ErrNotFound reports a tile or state that the store does not hold.
var ErrNotFound = errors.New("not found")

// ErrOutOfRange reports a leaf index or tree size beyond the committed tree.
var ErrOutOfRange = errors.New("beyond the committed tree")

// ErrCorrupt reports stored tree data that is missing or inconsistent.
var ErrCorrupt = errors.New("stored tree data is corrupt")

// TileID names a tile: the node hashes at tree level Level with indices
// [Index*TileWidth, (Index+1)*TileWidth).
type TileID struct {
	Level uint
	Index uint64
}

// Tile is a tile with its hashes concatenated; a partial tile holds fewer than TileWidth.
type Tile struct {
	ID     TileID
	Hashes []byte
}

// State is what the tree persists atomically after each batch: its size and compact range,
// plus an opaque cursor the caller stores with it (the ingester keeps the stream sequence).
type State struct {
	Size   uint64   `json:"size"`
	Range  [][]byte `json:"range"`
	Cursor uint64   `json:"cursor"`
}

// Store persists tiles and the tree state. PutTiles must complete before PutState is
// called, so a stored state never refers to nodes that are not stored. Tiles are
// deterministic, so rewriting one after a crash is harmless.
type Store interface {
	GetTile(ctx context.Context, id TileID) ([]byte, error)
	PutTiles(ctx context.Context, tiles []Tile) error
	GetState(ctx context.Context) (State, error)
	PutState(ctx context.Context, s State) error
}

// Tree is the Merkle tree. Appends are staged in memory and become visible to proofs only
// when Commit has persisted them. It is safe for concurrent use.
type Tree struct {
	store Store
	fact  *compact.RangeFactory

	mu        sync.RWMutex
	rng       *compact.Range // staged: includes uncommitted appends
	committed State
	tiles     map[TileID][]byte
	dirty     map[TileID]struct{}
}

// Open loads the tree state from the store, or starts an empty tree.
func Open(ctx context.Context, store Store) (*Tree, error) {
	t := &Tree{
		store: store,
		fact:  &compact.RangeFactory{Hash: Hasher.HashChildren},
		tiles: map[TileID][]byte{},
		dirty: map[TileID]struct{}{},
	}
	st, err := store.GetState(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		st = State{}
	case err != nil:
		return nil, fmt.Errorf("load tree state: %w", err)
	}
	rng, err := t.fact.NewRange(0, st.Size, cloneHashes(st.Range))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	t.rng = rng
	t.committed = State{Size: st.Size, Range: cloneHashes(st.Range), Cursor: st.Cursor}
	return t, nil
}

// Committed returns the persisted state.
func (t *Tree) Committed() State {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return State{Size: t.committed.Size, Range: cloneHashes(t.committed.Range), Cursor: t.committed.Cursor}
}

// Size returns the committed tree size.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.committed.Size
}

// Staged returns the tree size including appends not yet committed.
func (t *Tree) Staged() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rng.End()
}

// Append stages a leaf hash and returns its index.
func (t *Tree) Append(leafHash []byte) (uint64, error) {
	if len(leafHash) != HashSize {
		return 0, fmt.Errorf("append leaf: hash is %d bytes, want %d", len(leafHash), HashSize)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx := t.rng.End()
	if err := t.rng.Append(leafHash, t.visit); err != nil {
		return 0, fmt.Errorf("append leaf: %w", err)
	}
	return idx, nil
}

// visit records a perfect node in its tile; called with t.mu held.
func (t *Tree) visit(id compact.NodeID, hash []byte) {
	tid := TileID{Level: id.Level, Index: id.Index / TileWidth}
	off := int(id.Index%TileWidth) * HashSize
	tile := t.tiles[tid]
	if tile == nil && off > 0 {
		// Continue a partial tile stored by an earlier run; a missing one is caught on Commit.
		if stored, err := t.store.GetTile(context.Background(), tid); err == nil {
			tile = stored
		}
	}
	switch {
	case len(tile) == off:
		tile = append(tile, hash...)
	case len(tile) > off:
		copy(tile[off:], hash)
	default:
		// A gap: keep it visible as corruption rather than shifting hashes.
		tile = append(tile, make([]byte, off-len(tile))...)
		tile = append(tile, hash...)
	}
	t.tiles[tid] = tile
	t.dirty[tid] = struct{}{}
}

// Commit persists the staged appends with the cursor, tiles first and then the state.
func (t *Tree) Commit(ctx context.Context, cursor uint64) error {
	t.mu.RLock()
	tiles := make([]Tile, 0, len(t.dirty))
	for id := range t.dirty {
		tiles = append(tiles, Tile{ID: id, Hashes: append([]byte(nil), t.tiles[id]...)})
	}
	st := State{Size: t.rng.End(), Range: cloneHashes(t.rng.Hashes()), Cursor: cursor}
	t.mu.RUnlock()

	if len(tiles) > 0 {
		if err := t.store.PutTiles(ctx, tiles); err != nil {
			return fmt.Errorf("store tiles: %w", err)
		}
	}
	if err := t.store.PutState(ctx, st); err != nil {
		return fmt.Errorf("store tree state: %w", err)
	}
	t.mu.Lock()
	for _, tl := range tiles {
		if len(t.tiles[tl.ID]) == len(tl.Hashes) {
			delete(t.dirty, tl.ID)
		}
	}
	t.committed = st
	t.mu.Unlock()
	return nil
}

// Rollback drops staged appends that were not committed, e.g. after a failed Commit.
func (t *Tree) Rollback() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rng, err := t.fact.NewRange(0, t.committed.Size, cloneHashes(t.committed.Range))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	t.rng = rng
	// Tiles beyond the committed size are deterministic and will be rewritten identically.
	return nil
}

// Head returns the committed size and its root hash, read together.
func (t *Tree) Head() (uint64, []byte) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.committed.Size, rootOf(t.fact, t.committed)
}

// Root returns the root hash of the committed tree (the empty-tree hash for size 0).
func (t *Tree) Root() []byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return rootOf(t.fact, t.committed)
}

func rootOf(f *compact.RangeFactory, st State) []byte {
	if st.Size == 0 {
		return Hasher.EmptyRoot()
	}
	r, err := f.NewRange(0, st.Size, st.Range)
	if err != nil {
		return nil
	}
	root, _ := r.GetRootHash(nil)
	return root
}

// RootAt returns the root hash of the tree at a committed size.
func (t *Tree) RootAt(ctx context.Context, size uint64) ([]byte, error) {
	if size == 0 {
		return Hasher.EmptyRoot(), nil
	}
	if size > t.Size() {
		return nil, fmt.Errorf("root at %d: %w", size, ErrOutOfRange)
	}
	// The compact range of [0, size) is a set of perfect nodes, all stored.
	ids := compact.RangeNodes(0, size, nil)
	hashes, err := t.nodes(ctx, ids)
	if err != nil {
		return nil, err
	}
	r, err := t.fact.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return r.GetRootHash(nil)
}

// LeafHash returns the stored hash of a committed leaf.
func (t *Tree) LeafHash(ctx context.Context, index uint64) ([]byte, error) {
	if index >= t.Size() {
		return nil, fmt.Errorf("leaf %d: %w", index, ErrOutOfRange)
	}
	h, err := t.nodes(ctx, []compact.NodeID{compact.NewNodeID(0, index)})
	if err != nil {
		return nil, err
	}
	return h[0], nil
}

// InclusionProof returns the audit path of a leaf in the tree of the given committed size.
func (t *Tree) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if size > t.Size() || index >= size {
		return nil, fmt.Errorf("inclusion proof of %d in %d: %w", index, size, ErrOutOfRange)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	return t.rehash(ctx, n)
}

// ConsistencyProof proves that the tree of size1 is a prefix of the tree of size2.
func (t *Tree) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if size2 > t.Size() || size1 > size2 {
		return nil, fmt.Errorf("consistency proof %d to %d: %w", size1, size2, ErrOutOfRange)
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return t.rehash(ctx, n)
}

func (t *Tree) rehash(ctx context.Context, n proof.Nodes) ([][]byte, error) {
	hashes, err := t.nodes(ctx, n.IDs)
	if err != nil {
		return nil, err
	}
	out, err := n.Rehash(hashes, Hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return out, nil
}

// nodes reads node hashes from the tile cache, loading missing tiles from the store.
func (t *Tree) nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	var missing []int
	t.mu.RLock()
	for i, id := range ids {
		if h := hashIn(t.tiles[TileID{id.Level, id.Index / TileWidth}], id.Index); h != nil {
			out[i] = h
		} else {
			missing = append(missing, i)
		}
	}
	t.mu.RUnlock()
	for _, i := range missing {
		id := ids[i]
		tid := TileID{id.Level, id.Index / TileWidth}
		tile, err := t.store.GetTile(ctx, tid)
		if err != nil {
			return nil, fmt.Errorf("%w: node %d/%d: %v", ErrCorrupt, id.Level, id.Index, err)
		}
		t.mu.Lock()
		if cur := t.tiles[tid]; len(tile) > len(cur) {
			t.tiles[tid] = tile
		} else {
			tile = cur
		}
		t.mu.Unlock()
		h := hashIn(tile, id.Index)
		if h == nil {
			return nil, fmt.Errorf("%w: node %d/%d not in its tile", ErrCorrupt, id.Level, id.Index)
		}
		out[i] = h
	}
	return out, nil
}

func hashIn(tile []byte, index uint64) []byte {
	off := int(index%TileWidth) * HashSize
	if off+HashSize > len(tile) {
		return nil
	}
	return append([]byte(nil), tile[off:off+HashSize]...)
}

func cloneHashes(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, h := range in {
		out[i] = append([]byte(nil), h...)
	}
	return out
}

// LeafHash returns the RFC 6962 leaf hash of data.
func LeafHash(data []byte) []byte { return Hasher.HashLeaf(data) }
