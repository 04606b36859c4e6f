package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// parseRecordFast reads a record line in exactly the layout Writer produces, without
// reflection. It accepts only that layout (fixed key order, no escapes in the scalar
// strings) and returns ok=false for anything else, which the caller then decodes with
// encoding/json: both paths see the same values for the lines the fast path accepts.
func parseRecordFast(line []byte) (r Record, ok bool) {
	s := line
	expect := func(p string) bool {
		if !bytes.HasPrefix(s, []byte(p)) {
			return false
		}
		s = s[len(p):]
		return true
	}
	str := func() ([]byte, bool) {
		i := bytes.IndexByte(s, '"')
		if i < 0 {
			return nil, false
		}
		v := s[:i]
		for _, c := range v {
			// Printable ASCII only: escapes, control bytes and UTF-8 go the slow way.
			if c < 0x20 || c > 0x7e || c == '\\' {
				return nil, false
			}
		}
		s = s[i+1:]
		return v, true
	}
	b64 := func() ([]byte, bool) {
		v, ok := str()
		if !ok {
			return nil, false
		}
		out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
		n, err := base64.StdEncoding.Decode(out, v)
		if err != nil {
			return nil, false
		}
		return out[:n], true
	}
	if !expect(`{"index":`) {
		return r, false
	}
	i := bytes.IndexByte(s, ',')
	if i <= 0 {
		return r, false
	}
	idx, err := strconv.ParseUint(string(s[:i]), 10, 64)
	if err != nil || (i > 1 && s[0] == '0') {
		return r, false
	}
	r.Index, s = idx, s[i:]
	if !expect(`,"subject":"`) {
		return r, false
	}
	v, ok := str()
	if !ok {
		return r, false
	}
	r.Subject = string(v)
	if !expect(`,"receive_time":"`) {
		return r, false
	}
	if v, ok = str(); !ok {
		return r, false
	}
	if r.ReceiveTime, err = time.Parse(time.RFC3339Nano, string(v)); err != nil {
		return r, false
	}
	if !expect(`,"kind":"`) {
		return r, false
	}
	if v, ok = str(); !ok {
		return r, false
	}
	r.Kind = string(v)
	if !expect(`,"data":"`) {
		return r, false
	}
	if r.Data, ok = b64(); !ok {
		return r, false
	}
	if !expect(`,"leaf_hash":"`) {
		return r, false
	}
	if r.LeafHash, ok = b64(); !ok {
		return r, false
	}
	const proofKey = `,"inclusion_proof":"`
	switch {
	case expect(`,"event":`):
		// A proof key cannot occur inside the event: quotes in its strings are escaped and
		// no event message has such a field (the event is checked against the data anyway).
		end := bytes.LastIndex(s, []byte(proofKey))
		if end < 0 {
			return r, false
		}
		// Not validated here: eventMatches accepts it only if it is this build's rendering of
		// the data, or else decodes it strictly.
		r.Event, s = json.RawMessage(s[:end]), s[end:]
	case expect(`,"invalid":"`):
		if v, ok = str(); !ok {
			return r, false
		}
		r.Invalid = string(v)
	}
	if !expect(proofKey) {
		return r, false
	}
	if r.InclusionProof, ok = b64(); !ok {
		return r, false
	}
	if !expect(`}`) || len(s) != 0 {
		return r, false
	}
	return r, true
}

// eventMatches reports whether the shown event JSON is the decoded data. The fast path
// compares it byte for byte (whitespace aside) with this build's rendering of msg; when
// that differs (another protobuf version may render a value differently) it decodes the
// shown event and compares the messages.
func eventMatches(shown json.RawMessage, kind string, msg proto.Message) bool {
	if rendered, err := (protojson.MarshalOptions{}).Marshal(msg); err == nil && bytes.Equal(stripSpace(rendered), shown) {
		return true
	}
	m := NewMessage(kind)
	if m == nil || protojson.Unmarshal(shown, m) != nil {
		return false
	}
	return proto.Equal(m, msg)
}

// stripSpace removes the insignificant whitespace of a JSON document in place: the bundle
// writer stores events compacted, and protojson varies spacing between builds.
func stripSpace(b []byte) []byte {
	out := b[:0]
	inStr, esc := false, false
	for _, c := range b {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			continue
		}
		out = append(out, c)
	}
	return out
}
