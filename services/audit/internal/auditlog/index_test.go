package auditlog

import (
	"fmt"
	"testing"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

func buildIndex(tb testing.TB, n int) *index {
	tb.Helper()
	ix := newIndex(0)
	batch := make([]IndexFields, 0, 10000)
	for i := range n {
		d := auditv1.Decision_DECISION_ALLOWED
		if i%10 == 0 {
			d = auditv1.Decision_DECISION_DENIED_POLICY
		}
		batch = append(batch, IndexFields{Index: uint64(i), Time: int64(i) * 1000, Kind: "llm_call", Decision: d,
			Principal: fmt.Sprintf("user-%d", i%1000), Team: fmt.Sprintf("team-%d", i%20), APIKey: fmt.Sprintf("key-%d", i%5000),
			ModelReq: "gpt-4o", ModelServed: "gpt-4o-2024-08-06", Provider: "openai", RequestID: fmt.Sprintf("req-%d", i), EventID: fmt.Sprintf("ev-%d", i)})
		if len(batch) == cap(batch) {
			if err := ix.add(batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := ix.add(batch); err != nil {
		tb.Fatal(err)
	}
	return ix
}

func TestIndex_FiltersCombineAndPageInLeafOrder(t *testing.T) {
	ix := buildIndex(t, 20000)
	got, more := ix.query(Filter{Principal: "user-7", Decision: auditv1.Decision_DECISION_DENIED_POLICY, Limit: 5}, 20000)
	// user-7 is every 1000th leaf from 7; denied every 10th: never both (7 mod 10 != 0).
	if len(got) != 0 || more {
		t.Fatalf("impossible combination matched %v", got)
	}
	got, more = ix.query(Filter{Principal: "user-10", Decision: auditv1.Decision_DECISION_DENIED_POLICY, Limit: 5}, 20000)
	if len(got) != 5 || !more || got[0] != 10 || got[4] != 4010 {
		t.Fatalf("page 1: %v more=%v", got, more)
	}
	got, more = ix.query(Filter{Principal: "user-10", Decision: auditv1.Decision_DECISION_DENIED_POLICY, Limit: 100, After: 4011}, 20000)
	if len(got) != 15 || more || got[0] != 5010 {
		t.Fatalf("page 2: %v more=%v", got, more)
	}
	got, _ = ix.query(Filter{Model: "gpt-4o-2024-08-06", Start: 5_000_000, End: 5_004_000, Limit: 100}, 20000)
	if len(got) != 5 || got[0] != 5000 || got[4] != 5004 {
		t.Fatalf("time range by served model: %v", got)
	}
	if got, _ := ix.query(Filter{RequestID: "req-12345", Limit: 10}, 20000); len(got) != 1 || got[0] != 12345 {
		t.Fatalf("request id: %v", got)
	}
	if got, _ := ix.query(Filter{Principal: "nobody", Limit: 10}, 20000); len(got) != 0 {
		t.Fatalf("unknown principal matched %v", got)
	}
	if got, _ := ix.query(Filter{Limit: 10}, 3); len(got) != 3 {
		t.Fatalf("uncommitted leaves served: %v", got)
	}
	if i, ok := ix.byEvent("ev-777"); !ok || i != 777 {
		t.Fatal("event id lookup")
	}
}

func TestIndex_ReplayedBatchIsIgnoredAndGapsRefused(t *testing.T) {
	ix := newIndex(0)
	fs := []IndexFields{{Index: 0, Kind: "llm_call"}, {Index: 1, Kind: "llm_call"}}
	if err := ix.add(fs); err != nil {
		t.Fatal(err)
	}
	if err := ix.add(fs); err != nil || ix.end() != 2 {
		t.Fatalf("replay: %v, end %d", err, ix.end())
	}
	if err := ix.add([]IndexFields{{Index: 5}}); err == nil {
		t.Fatal("gap accepted")
	}
}

func TestIndexBatch_RoundTrips(t *testing.T) {
	in := IndexFields{Index: 42, Time: -5, Kind: "limit_exceeded", Decision: auditv1.Decision_DECISION_DENIED_RATE_LIMIT,
		Principal: "p", Team: "t", APIKey: "k", ModelReq: "m1", ModelServed: "m2", Provider: "pv", RequestID: "r", EventID: "e"}
	var out []IndexFields
	if err := decodeBatch(encodeEntry(nil, in), func(f IndexFields) { out = append(out, f) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0] != in {
		t.Fatalf("%+v", out)
	}
	if err := decodeBatch([]byte{0x80}, func(IndexFields) {}); err == nil {
		t.Fatal("truncated batch decoded")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeEntry(nil, IndexFields{Index: 1, Kind: "llm_call", Principal: "p"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeBatch(b, func(IndexFields) {})
	})
}

// BenchmarkIndexQuery_MillionRecords: one page of 100 from a million indexed records.
func BenchmarkIndexQuery_MillionRecords(b *testing.B) {
	ix := buildIndex(b, 1_000_000)
	cases := map[string]Filter{
		"principal":          {Principal: "user-123", Limit: 100},
		"principal+decision": {Principal: "user-120", Decision: auditv1.Decision_DECISION_DENIED_POLICY, Limit: 100},
		"team+time-range":    {Team: "team-3", Start: 500_000_000, End: 600_000_000, Limit: 100},
		"request-id":         {RequestID: "req-987654", Limit: 100},
		"deep-page":          {Model: "gpt-4o", After: 900_000, Limit: 100},
	}
	for name, f := range cases {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if got, _ := ix.query(f, 1_000_000); len(got) == 0 {
					b.Fatal("no match")
				}
			}
		})
	}
}
