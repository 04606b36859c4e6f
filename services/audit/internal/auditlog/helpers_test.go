package auditlog_test

import (
	"encoding/json"
	"testing"

	"github.com/bulwarkhq/bulwark/services/audit/evidence"
)

func decodeRecord(t *testing.T, line []byte) evidence.Record {
	t.Helper()
	var r evidence.Record
	mustJSON(t, line, &r)
	return r
}

func encodeRecord(t *testing.T, r evidence.Record) []byte { return toJSON(t, r) }

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
