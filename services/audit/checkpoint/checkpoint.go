// Package checkpoint formats, parses, signs and opens the audit log's signed tree heads.
//
// A checkpoint body follows the C2SP tlog-checkpoint format:
//
//	<origin>\n
//	<tree size, decimal>\n
//	<root hash, standard base64>\n
//	time <RFC 3339 UTC, nanoseconds>\n
//
// The last line is a C2SP extension line so that the signing time is covered by the
// signature. The body is wrapped in a C2SP signed note (golang.org/x/mod/sumdb/note).
package checkpoint

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// ErrMalformed reports a checkpoint body that does not follow the format.
var ErrMalformed = errors.New("malformed checkpoint")

// ErrBadSignature reports a signed note that the verifier key does not accept.
var ErrBadSignature = errors.New("checkpoint signature does not verify")

// ErrWrongOrigin reports a checkpoint for a different log.
var ErrWrongOrigin = errors.New("checkpoint is for another log")

// Checkpoint is a tree head: the size and root of the log at a time.
type Checkpoint struct {
	// Origin names the log.
	Origin string
	// Size is the number of leaves.
	Size uint64
	// Root is the RFC 6962 root hash.
	Root []byte
	// Time is when the checkpoint was made.
	Time time.Time
}

const timePrefix = "time "

// Marshal returns the checkpoint body, the text that is signed.
func (c Checkpoint) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(c.Origin)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatUint(c.Size, 10))
	b.WriteByte('\n')
	b.WriteString(base64.StdEncoding.EncodeToString(c.Root))
	b.WriteByte('\n')
	if !c.Time.IsZero() {
		b.WriteString(timePrefix)
		b.WriteString(c.Time.UTC().Format(time.RFC3339Nano))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Parse reads a checkpoint body. Unknown extension lines are ignored, as C2SP requires.
func Parse(body []byte) (Checkpoint, error) {
	text := string(body)
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: body must end with a newline", ErrMalformed)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: want at least 3 lines, got %d", ErrMalformed, len(lines))
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" {
		return Checkpoint{}, fmt.Errorf("%w: empty origin", ErrMalformed)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return Checkpoint{}, fmt.Errorf("%w: bad tree size", ErrMalformed)
	}
	c.Size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: bad root hash", ErrMalformed)
	}
	c.Root = root
	for _, l := range lines[3:] {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("%w: empty extension line", ErrMalformed)
		}
		if strings.HasPrefix(l, timePrefix) {
			t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(l, timePrefix))
			if err != nil {
				return Checkpoint{}, fmt.Errorf("%w: bad time", ErrMalformed)
			}
			c.Time = t.UTC()
		}
	}
	return c, nil
}

// Sign returns the checkpoint as a signed note.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: string(c.Marshal())}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return signed, nil
}

// Open verifies a signed note with the verifier and parses its checkpoint. When origin is
// not empty the checkpoint must carry it.
func Open(signed []byte, v note.Verifier, origin string) (Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	c, err := Parse([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if origin != "" && c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: %q", ErrWrongOrigin, c.Origin)
	}
	return c, nil
}
