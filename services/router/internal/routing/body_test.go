package routing

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

func joined(parts [][]byte) []byte { return bytes.Join(parts, nil) }

func TestRequestEdits_SpliceModelStreamAndUsageWithoutTouchingTheRest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"model":"a","x":{"model":"keep"}}`, `{"stream":true,"stream_options":{"include_usage":true},"model":"b","x":{"model":"keep"}}`},
		{`{ }`, `{"model":"b","stream":true,"stream_options":{"include_usage":true} }`},
		{`{"stream":false,"model":"b","stream_options":{"x":1}}`, `{"stream":true,"model":"b","stream_options":{"include_usage":true,"x":1}}`},
	} {
		top, ok := scanTop([]byte(tc.in))
		if !ok {
			t.Fatal(tc.in)
		}
		edits, _ := requestEdits([]byte(tc.in), top, "b", true, true)
		if got := string(joined(patch([]byte(tc.in), edits))); got != tc.want {
			t.Errorf("%s -> %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestPatch_SharesTheOriginalBody(t *testing.T) {
	body := []byte(`{"model":"a","messages":[` + string(bytes.Repeat([]byte(`{"role":"user","content":"x"},`), 1000)) + `{"role":"user","content":"y"}]}`)
	top, _ := scanTop(body)
	edits, _ := requestEdits(body, top, "bbb", false, true)
	parts := patch(body, edits)
	if len(parts) != 3 || &parts[2][len(parts[2])-1] != &body[len(body)-1] {
		t.Fatal("the large part of the body was copied")
	}
}

func FuzzRequestEdits_KeepValidJSONValid(f *testing.F) {
	f.Add([]byte(`{"model":"a","stream":true}`), "m")
	f.Add([]byte(`{"stream_options":null,"model":1}`), "x\"y")
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		top, ok := scanTop(body)
		if !ok || !json.Valid(body) || !utf8.ValidString(model) {
			return // deployment model names come from validated configuration
		}
		for _, stream := range []bool{false, true} {
			edits, _ := requestEdits(body, top, model, stream, true)
			out := joined(patch(body, edits))
			if !json.Valid(out) {
				t.Fatalf("%s -> invalid %s", body, out)
			}
			if gjson.GetBytes(out, "model").Str != model {
				t.Fatalf("%s -> model %s", body, gjson.GetBytes(out, "model").Raw)
			}
		}
	})
}
