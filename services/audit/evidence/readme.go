package evidence

// auditorReadme is README.md inside every bundle.
const auditorReadme = `# Bulwark audit evidence bundle

This archive is an extract of Bulwark's append-only audit log: an RFC 6962 (RFC 9162)
Merkle tree over every audit event, in the order the audit stream stored them. The log
operator signs the tree's size and root ("checkpoints") with an Ed25519 key held in
HashiCorp Vault. Everything below can be checked offline.

Automated check:  bulwarkctl audit verify BUNDLE.tar.gz [--key "<verifier key>"]

## Files

- manifest.json — origin (the log's name), the time range requested, the leaf range
  [first_index, end_index) of the records, and proof_tree_size: the checkpoint every
  inclusion proof is made against.
- manifest.note — the same facts as a signed note (see below), so that records cannot be
  cut from either end of the range unnoticed.
- verifier-key.txt — the signed-note verifier key "<name>+<key hash>+<base64 key>".
  The last field is 0x01 followed by the 32-byte Ed25519 public key. Compare it with the
  key the operator publishes (GetPublicKey); a bundle checked with its own key proves only
  that it is self-consistent.
- public-key.pem — the same Ed25519 public key as PKIX PEM.
- checkpoints.jsonl — one signed checkpoint per line, increasing tree size.
- consistency.jsonl — for each pair of consecutive checkpoints, an RFC 6962 consistency
  proof that the earlier tree is a prefix of the later one (nothing was rewritten).
- records/NNNNNN.jsonl — the records, in leaf order. Each line:
  - index: the leaf index (0-based) in the log;
  - subject: the NATS subject the event was published on; kind: its last token, or
    "invalid" for a message that failed validation (it is still in the log, and a
    dead_letter record naming its stream sequence follows it);
  - receive_time: when the audit stream stored it (not covered by the hash);
  - data: base64 of the exact bytes hashed into the leaf (a protobuf message: AuditEvent
    for bulwark.audit.v1.llm_call/admin_action, DeadLetter for dead_letter, the ratelimit
    AnomalyEvent/LimitExceededEvent for bulwark.ratelimit.v1.*);
  - leaf_hash: base64 of SHA-256(0x00 || data);
  - event: data decoded, as protobuf JSON, for reading;
  - inclusion_proof: base64 of the audit path hashes (32 bytes each, concatenated), from the leaf to the root of the
    checkpoint at proof_tree_size.

## Verifying by hand

1. Signed notes (C2SP signed-note). A note is the text, a blank line, and lines
   "— <name> <base64(4-byte key hash || 64-byte signature)>". Verify the Ed25519 signature
   over the text (including its final newline) with the public key.
2. Checkpoints. The text is "<origin>\n<tree size>\n<base64 root>\ntime <RFC 3339>\n" (C2SP
   tlog-checkpoint with a time extension line). Check each signature and that the origin is
   the manifest's.
3. Consistency. For each consecutive pair, verify the proof with the RFC 9162 section 2.1.4.2
   algorithm from (size1, root1) to (size2, root2).
4. manifest.note. Its text must equal the manifest's fields, in the order shown in it.
5. Records. For each record: recompute SHA-256(0x00 || data) and compare with leaf_hash;
   decode data and compare with event; verify inclusion_proof for (index, proof_tree_size)
   against the root of that checkpoint (RFC 9162 section 2.1.3.2, interior nodes are
   SHA-256(0x01 || left || right)). The indices must run from first_index to end_index - 1
   without a gap or repeat.

Any alteration of a record, a deleted, inserted or reordered record, a truncated range, or
a replaced checkpoint makes one of these checks fail and names the record or checkpoint.
`
