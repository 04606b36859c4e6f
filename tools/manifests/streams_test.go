package manifests

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAuditStream_IsAppendOnlyReplicatedAndKeptFor400Days(t *testing.T) {
	st := readStreamConfig(t)
	if st.Name != "BULWARK_AUDIT" {
		t.Errorf("name %q", st.Name)
	}
	if want := []string{"bulwark.audit.v1.>", "bulwark.ratelimit.v1.>"}; !slices.Equal(st.Subjects, want) {
		t.Errorf("subjects %v, want %v", st.Subjects, want)
	}
	if st.Replicas != 3 {
		t.Errorf("replicas %d, want 3", st.Replicas)
	}
	if !st.DenyDelete || !st.DenyPurge {
		t.Error("deny_delete and deny_purge must both be on")
	}
	if st.MaxAge != 400*24*time.Hour {
		t.Errorf("max_age %s, want 400 days", st.MaxAge)
	}
	if st.Storage != jetstream.FileStorage || st.Retention != jetstream.LimitsPolicy || st.Discard != jetstream.DiscardOld {
		t.Errorf("storage %v retention %v discard %v: want file, limits, old", st.Storage, st.Retention, st.Discard)
	}
	if st.AllowRollup {
		t.Error("rollups would let a publisher replace history")
	}
}

func TestAuditStream_IsAcceptedByJetStreamAndStaysAppendOnly(t *testing.T) {
	// A single embedded server holds one replica; everything else is the file's.
	_, js := platformtest.NATS(t)
	ctx := context.Background()
	cfg := readStreamConfig(t)
	cfg.Replicas = 1
	s, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatalf("JetStream rejects the stream file: %v", err)
	}
	got := s.CachedInfo().Config
	if got.MaxAge != cfg.MaxAge || !got.DenyDelete || !got.DenyPurge || got.Duplicates != cfg.Duplicates {
		t.Fatalf("server stored %+v", got)
	}
	ack, err := js.Publish(ctx, "bulwark.audit.v1.llm_call", []byte("event"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Fatal("a message was deleted from the audit stream")
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("the audit stream was purged")
	}
	// deny_delete and deny_purge cannot be switched off by an update.
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, cfg); err == nil {
		t.Fatal("an update turned deny_delete/deny_purge off")
	}
}
