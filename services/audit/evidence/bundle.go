// Package evidence writes and verifies audit evidence bundles: a tar.gz that an auditor
// checks offline, with nothing but this package (or the README's procedure) and the
// log's public key.
//
// A bundle holds, in this order:
//
//	README.md            what each file is and how to verify it by hand
//	manifest.json        the range: origin, times, leaf indices, proof tree size
//	manifest.note        the manifest's facts as a signed note (same key as checkpoints)
//	verifier-key.txt     the signed-note verifier key
//	public-key.pem       the same Ed25519 key in PEM
//	checkpoints.jsonl    signed checkpoints, increasing tree size
//	consistency.jsonl    a consistency proof between each consecutive pair of checkpoints
//	records/NNNNNN.jsonl the records, in leaf order, each with its inclusion proof against
//	                     the checkpoint of manifest.proof_tree_size
package evidence

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Format names this bundle layout.
const Format = "bulwark-audit-evidence/1"

// RecordsPerFile is how many records each records/NNNNNN.jsonl holds.
const RecordsPerFile = 10000

// Manifest describes a bundle.
type Manifest struct {
	Format string `json:"format"`
	Origin string `json:"origin"`
	// StartTime and EndTime are the requested range of receive times.
	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`
	// FirstIndex and EndIndex delimit the records: leaves [FirstIndex, EndIndex).
	FirstIndex uint64 `json:"first_index"`
	EndIndex   uint64 `json:"end_index"`
	// ProofTreeSize is the checkpoint every inclusion proof is against.
	ProofTreeSize uint64    `json:"proof_tree_size"`
	Created       time.Time `json:"created"`
	VerifierKey   string    `json:"verifier_key"`
}

// NoteText is the text of manifest.note: the manifest's facts that an attacker would change
// to hide a truncation, under the log's signature. Its second line is not a number, so it
// can never be read as a checkpoint.
func (m Manifest) NoteText() string {
	return fmt.Sprintf("%s\norigin %s\nrange %d %d\nproof_tree_size %d\nstart %s\nend %s\ncreated %s\n",
		Format, m.Origin, m.FirstIndex, m.EndIndex, m.ProofTreeSize,
		m.StartTime.UTC().Format(time.RFC3339Nano), m.EndTime.UTC().Format(time.RFC3339Nano),
		m.Created.UTC().Format(time.RFC3339Nano))
}

// CheckpointEntry is one line of checkpoints.jsonl.
type CheckpointEntry struct {
	TreeSize   uint64    `json:"tree_size"`
	RootHash   []byte    `json:"root_hash"`
	Time       time.Time `json:"time"`
	SignedNote string    `json:"signed_note"`
}

// ConsistencyEntry is one line of consistency.jsonl.
type ConsistencyEntry struct {
	FromSize uint64   `json:"from_size"`
	ToSize   uint64   `json:"to_size"`
	Proof    [][]byte `json:"proof"`
}

// Record is one line of a records file.
type Record struct {
	Index       uint64    `json:"index"`
	Subject     string    `json:"subject"`
	ReceiveTime time.Time `json:"receive_time"`
	Kind        string    `json:"kind"`
	// Data is the exact message body that was hashed into the leaf.
	Data     []byte `json:"data"`
	LeafHash []byte `json:"leaf_hash"`
	// Event is Data decoded, in protobuf JSON; absent for invalid records.
	Event json.RawMessage `json:"event,omitempty"`
	// Invalid is why an invalid record failed validation.
	Invalid string `json:"invalid,omitempty"`
	// InclusionProof is the audit path: the proof's 32-byte hashes concatenated, in base64.
	InclusionProof []byte `json:"inclusion_proof"`
}

// JoinProof concatenates proof hashes for Record.InclusionProof.
func JoinProof(p [][]byte) []byte {
	out := make([]byte, 0, len(p)*32)
	for _, h := range p {
		out = append(out, h...)
	}
	return out
}

// SplitProof splits Record.InclusionProof into hashes; ok is false when its length is not
// a multiple of 32.
func SplitProof(b []byte) (p [][]byte, ok bool) {
	if len(b)%32 != 0 {
		return nil, false
	}
	for i := 0; i < len(b); i += 32 {
		p = append(p, b[i:i+32])
	}
	return p, true
}

func recordsFileName(n int) string { return fmt.Sprintf("records/%06d.jsonl", n) }

func isRecordsFile(name string) (int, bool) {
	if !strings.HasPrefix(name, "records/") || !strings.HasSuffix(name, ".jsonl") {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "records/"), ".jsonl"))
	return n, err == nil
}
