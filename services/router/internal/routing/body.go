package routing

import (
	"encoding/json"
	"strconv"
	"unsafe"

	"github.com/tidwall/gjson"
)

// edit replaces body[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// patch returns body with edits applied as a list of slices to be written in order,
// so that a large body is never copied: only the small replacements are new memory.
func patch(body []byte, edits []edit) [][]byte {
	if len(edits) == 0 {
		return [][]byte{body}
	}
	// edits are few; insertion sort by start.
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].start < edits[j-1].start; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	parts := make([][]byte, 0, 2*len(edits)+1)
	pos := 0
	for _, e := range edits {
		if e.start > pos {
			parts = append(parts, body[pos:e.start])
		}
		parts = append(parts, e.repl)
		pos = e.end
	}
	if pos < len(body) {
		parts = append(parts, body[pos:])
	}
	return parts
}

// objectStart is the offset just after the body's opening brace, and whether the object is empty.
func objectStart(body []byte) (int, bool) {
	for i, c := range body {
		if c == '{' {
			for _, d := range body[i+1:] {
				switch d {
				case ' ', '\t', '\n', '\r':
					continue
				case '}':
					return i + 1, true
				}
				return i + 1, false
			}
			return i + 1, true
		}
	}
	return 0, true
}

// setField makes a top-level field hold raw JSON: replaced in place when present,
// inserted after the opening brace otherwise. Insertions at the same offset keep
// their order, so in an empty object every insertion after the first leads with a comma.
func setField(body []byte, r gjson.Result, name string, raw []byte, edits []edit) []edit {
	if r.Exists() && r.Index > 0 {
		return append(edits, edit{start: r.Index, end: r.Index + len(r.Raw), repl: raw})
	}
	at, empty := objectStart(body)
	ins := make([]byte, 0, len(name)+len(raw)+4)
	if empty {
		for _, e := range edits {
			if e.start == at && e.end == at {
				ins = append(ins, ',')
				break
			}
		}
	}
	ins = strconv.AppendQuote(ins, name)
	ins = append(ins, ':')
	ins = append(ins, raw...)
	if !empty {
		ins = append(ins, ',')
	}
	return append(edits, edit{start: at, end: at, repl: ins})
}

// requestEdits are the changes a same-format body needs: the deployment's model, and
// for streams "stream": true plus (OpenAI) usage in the stream. It reports whether
// usage was asked for by the caller (so the router knows whether to relay the usage chunk).
func requestEdits(body []byte, top topLevel, model string, stream, openAI bool) (edits []edit, callerUsage bool) {
	if m := top.model; m.Type != gjson.String || m.Str != model {
		q, _ := json.Marshal(model)
		edits = setField(body, m, "model", q, edits)
	}
	if !stream {
		return edits, false
	}
	if s := top.stream; s.Type != gjson.True {
		edits = setField(body, s, "stream", []byte("true"), edits)
	}
	if !openAI {
		return edits, false
	}
	so := top.streamOptions
	if so.Get("include_usage").Type == gjson.True {
		return edits, true
	}
	opts := map[string]any{}
	if so.IsObject() {
		_ = json.Unmarshal([]byte(so.Raw), &opts)
	}
	opts["include_usage"] = true
	raw, _ := json.Marshal(opts)
	return setField(body, so, "stream_options", raw, edits), false
}

// topLevel holds the few top-level fields the router reads, with their offsets.
type topLevel struct {
	model, stream, streamOptions gjson.Result
}

// scanTop reads the body's top-level fields in one pass without decoding the rest
// (messages are skipped, not parsed). It reports false when the body is not an object.
func scanTop(body []byte) (topLevel, bool) {
	var t topLevel
	if len(body) == 0 {
		return t, false
	}
	// Parse a string view of the body: gjson.ParseBytes would copy it whole. The
	// body is not modified while the call runs; values kept beyond it are cloned.
	r := gjson.Parse(unsafe.String(&body[0], len(body)))
	if !r.IsObject() || !endsObject(body) {
		return t, false
	}
	r.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			t.model = v
		case "stream":
			t.stream = v
		case "stream_options":
			t.streamOptions = v
		}
		return true
	})
	return t, true
}

// endsObject is a cheap truncation check: the last non-space byte closes the object.
func endsObject(body []byte) bool {
	for i := len(body) - 1; i >= 0; i-- {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '}':
			return i > 0
		}
		return false
	}
	return false
}
