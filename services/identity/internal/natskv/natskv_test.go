package natskv_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
	"github.com/bulwarkhq/bulwark/services/identity/internal/natskv"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func TestStore_MapsJetStreamSemanticsToTheDomainContract(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	s, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: js, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "principal.a"); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	rev, err := s.Create(ctx, "principal.a", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "principal.a", []byte("again")); !errors.Is(err, identity.ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
	rev2, err := s.Update(ctx, "principal.a", []byte("v2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "principal.a", []byte("stale"), rev); !errors.Is(err, identity.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	e, err := s.Get(ctx, "principal.a")
	if err != nil || string(e.Value) != "v2" || e.Revision != rev2 {
		t.Fatalf("get = %+v %v", e, err)
	}
	hist, err := s.History(ctx, "principal.a")
	if err != nil || len(hist) != 2 || string(hist[0].Value) != "v1" {
		t.Fatalf("history = %+v %v", hist, err)
	}
	if _, err := s.Create(ctx, "policy.dev.v.1", []byte("p")); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx, "principal")
	if err != nil || !slices.Equal(keys, []string{"principal.a"}) {
		t.Fatalf("keys = %v %v", keys, err)
	}
	if keys, err := s.Keys(ctx, "change"); err != nil || len(keys) != 0 {
		t.Fatalf("no changes yet: %v %v", keys, err)
	}
	if err := s.Delete(ctx, "principal.a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "principal.a"); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}

func TestStore_WatchSeesChangesFromAnotherClient(t *testing.T) {
	_, js := platformtest.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: js, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := natskv.NewStore(ctx, natskv.StoreParams{JetStream: js, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 10)
	if err := b.Watch(ctx, func(key string) { seen <- key }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, "role.x", []byte("r")); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-seen:
		if k != "role.x" {
			t.Fatalf("watch saw %q", k)
		}
	case <-time.After(time.Second):
		t.Fatal("watch did not see the change within a second")
	}
}
