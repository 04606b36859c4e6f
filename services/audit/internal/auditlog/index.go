package auditlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"google.golang.org/protobuf/proto"
)

// The index answers Query without reading the stream: one entry per leaf with interned
// strings, and a posting list (sorted leaf indices) per filter value. It is rebuilt at
// start from the index batches kept in JetStream (or from the records when those are
// missing) and grows as batches are committed.

var kinds = []string{"", evidence.KindLLMCall, evidence.KindAdminAction, evidence.KindDeadLetter, evidence.KindAnomaly, evidence.KindLimitExceeded, evidence.KindInvalid}

func kindCode(k string) uint8 {
	for i, s := range kinds {
		if s == k {
			return uint8(i)
		}
	}
	return 0
}

// IndexFields are the facts of one record that queries filter on.
type IndexFields struct {
	Index       uint64
	Time        int64 // receive time, Unix nanoseconds
	Kind        string
	Decision    auditv1.Decision
	Principal   string
	Team        string
	APIKey      string
	ModelReq    string
	ModelServed string
	Provider    string
	RequestID   string
	EventID     string
}

// fieldsOf extracts the index fields of a decoded record.
func fieldsOf(index uint64, t int64, kind string, msg proto.Message) IndexFields {
	f := IndexFields{Index: index, Time: t, Kind: kind}
	switch m := msg.(type) {
	case *auditv1.AuditEvent:
		f.EventID = m.GetEventId()
		if c := m.GetLlmCall(); c != nil {
			f.Decision, f.Principal, f.Team, f.APIKey = c.GetDecision(), c.GetPrincipalId(), c.GetTeamId(), c.GetApiKeyId()
			f.ModelReq, f.ModelServed, f.Provider, f.RequestID = c.GetModelRequested(), c.GetModelServed(), c.GetProvider(), c.GetRequestId()
		}
		if a := m.GetAdminAction(); a != nil {
			f.Principal = a.GetActor()
		}
	case *ratelimitv1.AnomalyEvent:
		f.EventID = m.GetEventId()
		switch m.GetSubjectKind() {
		case "api_key":
			f.APIKey = m.GetSubjectId()
		default:
			f.Principal = m.GetSubjectId()
		}
	case *ratelimitv1.LimitExceededEvent:
		f.EventID, f.RequestID = m.GetEventId(), m.GetRequestId()
		f.Decision = auditv1.Decision_DECISION_DENIED_RATE_LIMIT
		if s := m.GetSubject(); s != nil {
			f.Principal, f.Team, f.APIKey, f.ModelReq, f.Provider = s.GetPrincipalId(), s.GetTeamId(), s.GetApiKeyId(), s.GetModel(), s.GetProvider()
		}
	}
	return f
}

func (f IndexFields) strs() [9]string {
	return [9]string{f.Principal, f.Team, f.APIKey, f.ModelReq, f.ModelServed, f.Provider, f.RequestID, f.EventID, f.Kind}
}

// encodeEntry appends the binary form of f to b.
func encodeEntry(b []byte, f IndexFields) []byte {
	b = binary.AppendUvarint(b, f.Index)
	b = binary.AppendVarint(b, f.Time)
	b = binary.AppendUvarint(b, uint64(f.Decision))
	for _, s := range f.strs() {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var (
	errBadBatch = errors.New("index batch unreadable")
	errIndexGap = errors.New("index gap")
)

// decodeBatch calls fn for each entry of an index batch.
func decodeBatch(b []byte, fn func(IndexFields)) error {
	for len(b) > 0 {
		var f IndexFields
		var n int
		var u uint64
		if f.Index, n = binary.Uvarint(b); n <= 0 {
			return errBadBatch
		}
		b = b[n:]
		if f.Time, n = binary.Varint(b); n <= 0 {
			return errBadBatch
		}
		b = b[n:]
		if u, n = binary.Uvarint(b); n <= 0 {
			return errBadBatch
		}
		f.Decision = auditv1.Decision(u)
		b = b[n:]
		var s [9]string
		for i := range s {
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return errBadBatch
			}
			s[i] = string(b[n : n+int(l)])
			b = b[n+int(l):]
		}
		f.Principal, f.Team, f.APIKey, f.ModelReq, f.ModelServed, f.Provider, f.RequestID, f.EventID, f.Kind = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]
		fn(f)
	}
	return nil
}

// dimensions with posting lists.
const (
	dimPrincipal = iota
	dimTeam
	dimKey
	dimModel
	dimProvider
	dimRequest
	dimKind
	dimDecision
	numDims
)

type entry struct {
	time                                                       int64
	kind, decision                                             uint8
	principal, team, key, modelReq, modelServed, provider, req uint32
}

// index is the in-memory query index.
type index struct {
	mu      sync.RWMutex
	base    uint64 // leaf index of entries[0]
	entries []entry
	strs    []string
	ids     map[string]uint32
	post    [numDims]map[uint32][]uint64
	events  map[string]uint64
}

// newIndex returns an empty index whose first entry will be leaf base.
func newIndex(base uint64) *index {
	ix := &index{base: base, strs: []string{""}, ids: map[string]uint32{"": 0}, events: map[string]uint64{}}
	for i := range ix.post {
		ix.post[i] = map[uint32][]uint64{}
	}
	return ix
}

func (ix *index) intern(s string) uint32 {
	if id, ok := ix.ids[s]; ok {
		return id
	}
	id := uint32(len(ix.strs))
	ix.strs = append(ix.strs, s)
	ix.ids[s] = id
	return id
}

// end returns one past the last indexed leaf.
func (ix *index) end() uint64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.base + uint64(len(ix.entries))
}

// add indexes records that must follow the last one indexed.
func (ix *index) add(fs []IndexFields) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, f := range fs {
		end := ix.base + uint64(len(ix.entries))
		if f.Index < end {
			continue // already indexed (a batch replayed after a crash)
		}
		if f.Index > end {
			return fmt.Errorf("%w: have up to %d, got %d", errIndexGap, end, f.Index)
		}
		e := entry{time: f.Time, kind: kindCode(f.Kind), decision: uint8(f.Decision),
			principal: ix.intern(f.Principal), team: ix.intern(f.Team), key: ix.intern(f.APIKey),
			modelReq: ix.intern(f.ModelReq), modelServed: ix.intern(f.ModelServed), provider: ix.intern(f.Provider), req: ix.intern(f.RequestID)}
		ix.entries = append(ix.entries, e)
		post := func(d int, id uint32) {
			if id != 0 {
				ix.post[d][id] = append(ix.post[d][id], f.Index)
			}
		}
		post(dimPrincipal, e.principal)
		post(dimTeam, e.team)
		post(dimKey, e.key)
		post(dimModel, e.modelReq)
		if e.modelServed != e.modelReq {
			post(dimModel, e.modelServed)
		}
		post(dimProvider, e.provider)
		post(dimRequest, e.req)
		ix.post[dimKind][uint32(e.kind)] = append(ix.post[dimKind][uint32(e.kind)], f.Index)
		if e.decision != 0 {
			ix.post[dimDecision][uint32(e.decision)] = append(ix.post[dimDecision][uint32(e.decision)], f.Index)
		}
		if f.EventID != "" {
			if _, dup := ix.events[f.EventID]; !dup {
				ix.events[f.EventID] = f.Index
			}
		}
	}
	return nil
}

// byEvent returns the leaf of the first record with an event id.
func (ix *index) byEvent(id string) (uint64, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	i, ok := ix.events[id]
	return i, ok
}

// timeRange returns the leaves [lo, hi) received in [start, end] (nanoseconds, 0 = open).
// Receive times follow stream order, so the range is contiguous.
func (ix *index) timeRange(start, end int64) (uint64, uint64) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := len(ix.entries)
	lo := 0
	if start != 0 {
		lo = sort.Search(n, func(i int) bool { return ix.entries[i].time >= start })
	}
	hi := n
	if end != 0 {
		hi = sort.Search(n, func(i int) bool { return ix.entries[i].time > end })
	}
	if hi < lo {
		hi = lo
	}
	return ix.base + uint64(lo), ix.base + uint64(hi)
}

// Filter selects records; zero fields match everything.
type Filter struct {
	Start, End                                                int64 // receive time, Unix nanoseconds, inclusive; 0 = open
	Principal, Team, APIKey, Model, Provider, Kind, RequestID string
	Decision                                                  auditv1.Decision
	// After is the first leaf index to consider (from a page token).
	After uint64
	Limit int
}

// query returns up to f.Limit matching leaf indices from f.After on, and whether more match.
func (ix *index) query(f Filter, maxLeaf uint64) ([]uint64, bool) {
	lo, hi := ix.timeRange(f.Start, f.End)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	lo = max(lo, f.After)
	hi = min(hi, maxLeaf)
	if lo >= hi {
		return nil, false
	}
	type cond struct {
		dim int
		id  uint32
	}
	var conds []cond
	lookup := func(dim int, s string) bool {
		if s == "" {
			return true
		}
		id, ok := ix.ids[s]
		if !ok {
			return false
		}
		conds = append(conds, cond{dim, id})
		return true
	}
	if !lookup(dimPrincipal, f.Principal) || !lookup(dimTeam, f.Team) || !lookup(dimKey, f.APIKey) ||
		!lookup(dimModel, f.Model) || !lookup(dimProvider, f.Provider) || !lookup(dimRequest, f.RequestID) {
		return nil, false
	}
	if f.Kind != "" {
		k := kindCode(f.Kind)
		if k == 0 {
			return nil, false
		}
		conds = append(conds, cond{dimKind, uint32(k)})
	}
	if f.Decision != 0 {
		conds = append(conds, cond{dimDecision, uint32(f.Decision)})
	}
	match := func(i uint64) bool {
		e := &ix.entries[i-ix.base]
		for _, c := range conds {
			var ok bool
			switch c.dim {
			case dimPrincipal:
				ok = e.principal == c.id
			case dimTeam:
				ok = e.team == c.id
			case dimKey:
				ok = e.key == c.id
			case dimModel:
				ok = e.modelReq == c.id || e.modelServed == c.id
			case dimProvider:
				ok = e.provider == c.id
			case dimRequest:
				ok = e.req == c.id
			case dimKind:
				ok = uint32(e.kind) == c.id
			case dimDecision:
				ok = uint32(e.decision) == c.id
			}
			if !ok {
				return false
			}
		}
		return true
	}
	var out []uint64
	if len(conds) == 0 {
		for i := lo; i < hi; i++ {
			if len(out) == f.Limit {
				return out, true
			}
			out = append(out, i)
		}
		return out, false
	}
	// Walk the shortest posting list and check the other conditions on each entry.
	best := ix.post[conds[0].dim][conds[0].id]
	for _, c := range conds[1:] {
		if p := ix.post[c.dim][c.id]; len(p) < len(best) {
			best = p
		}
	}
	start := sort.Search(len(best), func(i int) bool { return best[i] >= lo })
	for _, i := range best[start:] {
		if i >= hi {
			break
		}
		if !match(i) {
			continue
		}
		if len(out) == f.Limit {
			return out, true
		}
		out = append(out, i)
	}
	return out, false
}
