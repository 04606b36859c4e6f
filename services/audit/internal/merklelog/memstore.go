package merklelog

import (
	"context"
	"sync"
)

// MemStore is a Store in memory, for building trees that need no persistence (bundle
// generators, benchmarks, unit tests of the tree's logic).
type MemStore struct {
	mu    sync.Mutex
	tiles map[TileID][]byte
	state *State
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{tiles: map[TileID][]byte{}} }

// GetTile returns a copy of a tile.
func (m *MemStore) GetTile(_ context.Context, id TileID) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tiles[id]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), t...), nil
}

// PutTiles stores copies of tiles.
func (m *MemStore) PutTiles(_ context.Context, ts []Tile) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range ts {
		m.tiles[t.ID] = append([]byte(nil), t.Hashes...)
	}
	return nil
}

// GetState returns the stored state.
func (m *MemStore) GetState(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		return State{}, ErrNotFound
	}
	return *m.state, nil
}

// PutState stores the state.
func (m *MemStore) PutState(_ context.Context, s State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = &s
	return nil
}
