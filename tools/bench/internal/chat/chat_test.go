package chat

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func TestCheckLoopback_RefusesAnyHostOffThisMachine(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true}, {"http://localhost:8080/v1", true}, {"http://[::1]:9000", true}, {"http://127.9.9.9", true},
		{"http://10.0.0.1:8080", false}, {"http://api.openai.com", false}, {"https://127.0.0.1", false}, {"http://0.0.0.0:8080", false},
		{"http://localhost.example.com", false}, {"ftp://127.0.0.1", false},
	} {
		err := CheckLoopback(c.url)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want allowed=%v", c.url, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrNotLoopback) && c.url != "ftp://127.0.0.1" {
			t.Errorf("%s: error %v is not ErrNotLoopback", c.url, err)
		}
	}
}

func TestHasToken_OnlyNonEmptyDeltaContentCounts(t *testing.T) {
	for line, want := range map[string]bool{
		`data: {"choices":[{"delta":{"role":"assistant","content":""}}]}`: false,
		`data: {"choices":[{"delta":{"content":"Hello"}}]}`:               true,
		`data: {"choices":[],"usage":{"total_tokens":3}}`:                 false,
		`data: {"choices":[{"delta":{"content":"`:                         false,
	} {
		if got := hasToken([]byte(line)); got != want {
			t.Errorf("%s: %v, want %v", line, got, want)
		}
	}
}

// Against the real simulator: a streamed call reports its first token, a
// plain one succeeds, and a refused credential is an error of class "http 401".
func TestDo_AgainstTheSimulator(t *testing.T) {
	s := sim.New(sim.Params{APIKeys: []string{"good"}})
	s.SetRecording(false)
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, stream := range []bool{false, true} {
		body, err := Body("gpt-4o", "hello there general", stream)
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{HC: NewHTTPClient(), URL: ts.URL + "/v1/chat/completions", Key: "good", Body: body, Stream: stream}
		r := c.Do(context.Background())
		if r.Err != nil {
			t.Fatalf("stream=%v: %v (%s)", stream, r.Err, r.Class)
		}
		if stream == r.FirstToken.IsZero() {
			t.Fatalf("stream=%v: first token at %v", stream, r.FirstToken)
		}
		c.Key = "bad"
		if r := c.Do(context.Background()); r.Err == nil || r.Class != "http 401" {
			t.Fatalf("stream=%v bad key: %v %q, want http 401", stream, r.Err, r.Class)
		}
	}
}
