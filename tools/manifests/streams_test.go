package manifests

import (
	"slices"
	"testing"
	"time"

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
