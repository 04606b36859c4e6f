package manifests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	networkingv1 "k8s.io/api/networking/v1"
)

type networkPolicy = networkingv1.NetworkPolicy

// networkPolicyEgressAll is the rule a careless edit would add: egress anywhere.
func networkPolicyEgressAll() networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{}
}

const streamFile = repoRoot + "/deploy/deps/nats-audit-stream.json"

// readStreamConfig strictly decodes the audit stream definition into the
// JetStream client's own type.
func readStreamConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Clean(streamFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cfg jetstream.StreamConfig
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", streamFile, err)
	}
	return cfg
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}
