package routing

import (
	"encoding/json"
	"strconv"

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
// inserted after the opening brace otherwise.
func setField(body []byte, name string, raw []byte, edits []edit) []edit {
	r := gjson.GetBytes(body, name)
	if r.Exists() && r.Index > 0 {
		return append(edits, edit{start: r.Index, end: r.Index + len(r.Raw), repl: raw})
	}
	at, empty := objectStart(body)
	ins := make([]byte, 0, len(name)+len(raw)+4)
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
func requestEdits(body []byte, model string, stream, openAI bool) (edits []edit, callerUsage bool) {
	if m := gjson.GetBytes(body, "model"); m.Type != gjson.String || m.Str != model {
		q, _ := json.Marshal(model)
		edits = setField(body, "model", q, edits)
	}
	if !stream {
		return edits, false
	}
	if s := gjson.GetBytes(body, "stream"); s.Type != gjson.True {
		edits = setField(body, "stream", []byte("true"), edits)
	}
	if !openAI {
		return edits, false
	}
	so := gjson.GetBytes(body, "stream_options")
	if so.Get("include_usage").Type == gjson.True {
		return edits, true
	}
	opts := map[string]any{}
	if so.IsObject() {
		_ = json.Unmarshal([]byte(so.Raw), &opts)
	}
	opts["include_usage"] = true
	raw, _ := json.Marshal(opts)
	return setField(body, "stream_options", raw, edits), false
}
