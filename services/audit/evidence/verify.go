package evidence

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ErrTampered reports a bundle that does not verify; Summary.Problems says where.
var ErrTampered = errors.New("evidence bundle does not verify")

// ErrUnreadable reports a bundle that is not a readable tar.gz of this format.
var ErrUnreadable = errors.New("evidence bundle unreadable")

// maxProblems bounds the problems collected; verification continues and counts the rest.
const maxProblems = 100

// Options tunes Verify.
type Options struct {
	// TrustedKey is the verifier key obtained out of band (GetPublicKey, the published key).
	// When empty the bundle's own verifier-key.txt is used and Summary.KeyFromBundle is set:
	// the bundle is then only shown to be self-consistent, not to come from the log.
	TrustedKey string
	// Workers verifying records in parallel; 0 means GOMAXPROCS.
	Workers int
}

// Summary is what a verification established.
type Summary struct {
	Origin        string
	VerifierKey   string
	KeyFromBundle bool
	FirstIndex    uint64
	EndIndex      uint64
	Records       uint64
	ByKind        map[string]uint64
	Checkpoints   int
	ProofTreeSize uint64
	ProofRoot     []byte
	// Problems lists what failed, naming the record or checkpoint; empty when valid.
	Problems []string
	// MoreProblems counts problems beyond the ones listed.
	MoreProblems int
}

func (s *Summary) problem(format string, args ...any) {
	if len(s.Problems) >= maxProblems {
		s.MoreProblems++
		return
	}
	s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
}

// Verify checks a bundle with the key it carries; see VerifyWith.
func Verify(bundle io.Reader) (Summary, error) { return VerifyWith(bundle, Options{}) }

// VerifyWith checks every signature, checkpoint, consistency proof, record hash, decoded
// event and inclusion proof in the bundle, and that the records are exactly the leaves
// [first_index, end_index) in order. It returns ErrTampered with the problems in the
// summary when anything fails.
func VerifyWith(bundle io.Reader, opt Options) (Summary, error) {
	s := Summary{ByKind: map[string]uint64{}}
	gz, err := gzip.NewReader(bufio.NewReaderSize(bundle, 1<<20))
	if err != nil {
		return s, fmt.Errorf("%w: not gzip: %v", ErrUnreadable, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	v := &verifier{s: &s, opt: opt, files: map[string][]byte{}}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("%w: tar: %v", ErrUnreadable, err)
		}
		if n, ok := isRecordsFile(h.Name); ok {
			if err := v.startRecords(); err != nil {
				return s, err
			}
			if n != v.nextFile {
				s.problem("records file %s out of sequence (expected %s)", h.Name, recordsFileName(v.nextFile))
			}
			v.nextFile = n + 1
			if err := v.records(tr); err != nil {
				return s, err
			}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 256<<20))
		if err != nil {
			return s, fmt.Errorf("%w: read %s: %v", ErrUnreadable, h.Name, err)
		}
		if _, dup := v.files[h.Name]; dup {
			s.problem("file %s appears twice", h.Name)
		}
		v.files[h.Name] = data
	}
	if err := v.startRecords(); err != nil {
		return s, err
	}
	v.finish()
	if len(s.Problems) > 0 {
		return s, fmt.Errorf("%w: %s", ErrTampered, strings.Join(s.Problems[:min(3, len(s.Problems))], "; "))
	}
	return s, nil
}

type verifier struct {
	s        *Summary
	opt      Options
	files    map[string][]byte
	started  bool
	man      Manifest
	vkey     note.Verifier
	root     []byte
	next     uint64 // next expected leaf index
	nextFile int
	seen     uint64
}

// startRecords checks everything before the records, once.
func (v *verifier) startRecords() error {
	if v.started {
		return nil
	}
	v.started = true
	s := v.s
	for _, name := range []string{"manifest.json", "manifest.note", "checkpoints.jsonl", "consistency.jsonl"} {
		if _, ok := v.files[name]; !ok {
			return fmt.Errorf("%w: %s missing before the records", ErrUnreadable, name)
		}
	}
	if err := json.Unmarshal(v.files["manifest.json"], &v.man); err != nil {
		return fmt.Errorf("%w: manifest.json: %v", ErrUnreadable, err)
	}
	if v.man.Format != Format {
		return fmt.Errorf("%w: format %q, want %q", ErrUnreadable, v.man.Format, Format)
	}
	key := v.opt.TrustedKey
	if key == "" {
		key = strings.TrimSpace(string(v.files["verifier-key.txt"]))
		s.KeyFromBundle = true
	} else if bk := strings.TrimSpace(string(v.files["verifier-key.txt"])); bk != key {
		s.problem("verifier-key.txt is not the trusted key")
	}
	vk, err := note.NewVerifier(key)
	if err != nil {
		return fmt.Errorf("%w: verifier key: %v", ErrUnreadable, err)
	}
	v.vkey = vk
	s.VerifierKey = key
	s.Origin = v.man.Origin
	s.FirstIndex, s.EndIndex, s.ProofTreeSize = v.man.FirstIndex, v.man.EndIndex, v.man.ProofTreeSize
	v.next = v.man.FirstIndex

	// The manifest's range is signed, so dropping records at either end is caught.
	if n, err := note.Open(v.files["manifest.note"], note.VerifierList(vk)); err != nil {
		s.problem("manifest.note: signature does not verify: %v", err)
	} else if n.Text != v.man.NoteText() {
		s.problem("manifest.json differs from the signed manifest.note")
	}
	if v.man.EndIndex < v.man.FirstIndex || v.man.EndIndex > v.man.ProofTreeSize {
		s.problem("manifest range [%d, %d) is not inside tree size %d", v.man.FirstIndex, v.man.EndIndex, v.man.ProofTreeSize)
	}

	// Checkpoints: each signature, each JSON field against the signed body, sizes increasing.
	var cps []checkpoint.Checkpoint
	dec := json.NewDecoder(bytes.NewReader(v.files["checkpoints.jsonl"]))
	for i := 0; ; i++ {
		var e CheckpointEntry
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%w: checkpoints.jsonl line %d: %v", ErrUnreadable, i+1, err)
		}
		c, err := checkpoint.Open([]byte(e.SignedNote), vk, v.man.Origin)
		if err != nil {
			s.problem("checkpoint %d (tree size %d): %v", i+1, e.TreeSize, err)
			continue
		}
		if c.Size != e.TreeSize || !bytes.Equal(c.Root, e.RootHash) || !c.Time.Equal(e.Time) {
			s.problem("checkpoint %d (tree size %d): fields differ from its signed note", i+1, e.TreeSize)
			continue
		}
		if len(cps) > 0 && c.Size <= cps[len(cps)-1].Size {
			s.problem("checkpoint %d (tree size %d): not larger than the previous checkpoint (%d)", i+1, c.Size, cps[len(cps)-1].Size)
			continue
		}
		cps = append(cps, c)
	}
	s.Checkpoints = len(cps)

	// Consistency: each consecutive pair of valid checkpoints must be proven consistent.
	proofs := map[[2]uint64][][]byte{}
	dec = json.NewDecoder(bytes.NewReader(v.files["consistency.jsonl"]))
	for i := 0; ; i++ {
		var e ConsistencyEntry
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%w: consistency.jsonl line %d: %v", ErrUnreadable, i+1, err)
		}
		proofs[[2]uint64{e.FromSize, e.ToSize}] = e.Proof
	}
	for i := 1; i < len(cps); i++ {
		a, b := cps[i-1], cps[i]
		p, ok := proofs[[2]uint64{a.Size, b.Size}]
		if !ok {
			s.problem("no consistency proof from checkpoint at tree size %d to %d", a.Size, b.Size)
			continue
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, p, a.Root, b.Root); err != nil {
			s.problem("checkpoint at tree size %d is not consistent with checkpoint at tree size %d: %v", a.Size, b.Size, err)
		}
	}
	for _, c := range cps {
		if c.Size == v.man.ProofTreeSize {
			v.root = c.Root
		}
	}
	if v.root == nil {
		s.problem("no valid checkpoint at the proof tree size %d: no record can be proven", v.man.ProofTreeSize)
	}
	s.ProofRoot = v.root
	return nil
}

type lineBatch struct {
	seq   int
	lines [][]byte
}

type recResult struct {
	index    uint64
	kind     string
	problems []string
}

type batchResult struct {
	seq     int
	results []recResult
}

// records verifies one records file, in parallel, then checks the order sequentially.
func (v *verifier) records(r io.Reader) error {
	workers := v.opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	in := make(chan lineBatch, workers*2)
	out := make(chan batchResult, workers*2)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var pc *pathCache
			if v.root != nil {
				pc = newPathCache(v.man.ProofTreeSize, v.root)
			}
			for b := range in {
				res := make([]recResult, len(b.lines))
				for i, l := range b.lines {
					res[i] = v.checkRecord(l, pc)
				}
				out <- batchResult{seq: b.seq, results: res}
			}
		})
	}
	var readErr error
	go func() {
		defer close(in)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		batch := lineBatch{}
		for sc.Scan() {
			batch.lines = append(batch.lines, append([]byte(nil), sc.Bytes()...))
			if len(batch.lines) == 256 {
				in <- batch
				batch = lineBatch{seq: batch.seq + 1}
			}
		}
		if len(batch.lines) > 0 {
			in <- batch
		}
		readErr = sc.Err()
	}()
	go func() { wg.Wait(); close(out) }()
	pending := map[int]batchResult{}
	nextSeq := 0
	for br := range out {
		pending[br.seq] = br
		for {
			b, ok := pending[nextSeq]
			if !ok {
				break
			}
			delete(pending, nextSeq)
			nextSeq++
			for _, rr := range b.results {
				v.order(rr)
			}
		}
	}
	if readErr != nil {
		return fmt.Errorf("%w: records: %v", ErrUnreadable, readErr)
	}
	return nil
}

// order checks that records are the consecutive leaves and tallies the results.
func (v *verifier) order(rr recResult) {
	s := v.s
	for _, p := range rr.problems {
		s.problem("%s", p)
	}
	if rr.problems != nil && rr.kind == "" {
		return // unreadable line, already reported
	}
	switch {
	case rr.index == v.next:
		v.next++
	case rr.index > v.next:
		if rr.index-v.next == 1 {
			s.problem("record %d is missing (deleted)", v.next)
		} else {
			s.problem("records %d to %d are missing (deleted)", v.next, rr.index-1)
		}
		v.next = rr.index + 1
	default:
		s.problem("record %d is out of order or inserted (expected record %d here)", rr.index, v.next)
	}
	s.Records++
	s.ByKind[rr.kind]++
}

func (v *verifier) finish() {
	if !v.started {
		return
	}
	switch {
	case v.next < v.man.EndIndex:
		v.s.problem("records %d to %d are missing: the bundle is truncated", v.next, v.man.EndIndex-1)
	case v.next > v.man.EndIndex:
		v.s.problem("records beyond the signed range end %d were added", v.man.EndIndex)
	}
}

// checkRecord verifies one record on its own: hash, decoded event and inclusion proof.
func (v *verifier) checkRecord(line []byte, pc *pathCache) recResult {
	r, fast := parseRecordFast(line)
	if !fast {
		r = Record{}
		if err := json.Unmarshal(line, &r); err != nil {
			return recResult{problems: []string{fmt.Sprintf("unreadable record line after record %d: %v", v.next, err)}}
		}
	}
	res := recResult{index: r.Index, kind: r.Kind}
	bad := func(format string, args ...any) {
		res.problems = append(res.problems, fmt.Sprintf("record %d: ", r.Index)+fmt.Sprintf(format, args...))
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(r.Data)
	if !bytes.Equal(leaf, r.LeafHash) {
		bad("data does not match its leaf hash (altered)")
	}
	kind, msg, derr := Decode(r.Subject, r.Data)
	switch {
	case derr != nil && r.Kind != KindInvalid:
		bad("data does not decode as a valid %s event (altered): %v", r.Kind, derr)
	case derr == nil && r.Kind != kind:
		bad("kind %q does not match the data (%q)", r.Kind, kind)
	case derr == nil:
		if !eventMatches(r.Event, kind, msg) {
			bad("the decoded event differs from the hashed data (altered)")
		}
	}
	if pc != nil {
		p, ok := SplitProof(r.InclusionProof)
		if !ok {
			bad("inclusion proof is not a sequence of 32-byte hashes")
		} else if !pc.verify(r.Index, leaf, p) {
			bad("not included in the checkpoint at tree size %d (altered, inserted or moved)", v.man.ProofTreeSize)
		}
	}
	return res
}
