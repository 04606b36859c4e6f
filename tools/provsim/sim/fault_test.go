package sim_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

func post(t *testing.T, url, body string, hdr ...string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return http.DefaultClient.Do(req)
}

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

func TestSim_ScriptedFaultsApplyInOrderThenStop(t *testing.T) {
	s := sim.New(sim.Params{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	s.Inject(sim.Fault{Status: 429, RetryAfter: "1", Times: 2}, sim.Fault{Status: 503})
	var got []int
	for range 4 {
		res, err := post(t, ts.URL, chatBody)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		got = append(got, res.StatusCode)
	}
	if want := []int{429, 429, 503, 200}; !equalInts(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
}

func TestSim_ScriptedFaultMatchesOnlyItsModel(t *testing.T) {
	s := sim.New(sim.Params{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	s.Inject(sim.Fault{Status: 500, Model: "other", Times: -1})
	res, err := post(t, ts.URL, chatBody)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status = %d", res.StatusCode)
	}
	res, err = post(t, ts.URL, `{"model":"other","messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 500 {
		t.Fatalf("status = %d", res.StatusCode)
	}
}

func TestSim_ResetDropsTheConnection(t *testing.T) {
	ts := httptest.NewServer(sim.New(sim.Params{}))
	defer ts.Close()
	_, err := post(t, ts.URL, chatBody, sim.FaultHeader, "reset")
	if err == nil {
		t.Fatal("request succeeded despite reset")
	}
}

func TestSim_LatencyDelaysTheAnswer(t *testing.T) {
	ts := httptest.NewServer(sim.New(sim.Params{}))
	defer ts.Close()
	start := time.Now()
	res, err := post(t, ts.URL, chatBody, sim.FaultHeader, "latency=60ms")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if time.Since(start) < 60*time.Millisecond {
		t.Fatal("answered before the injected latency")
	}
}

func TestSim_ScriptedReplyReplacesEcho(t *testing.T) {
	s := sim.New(sim.Params{Reply: "fixed answer"})
	ts := httptest.NewServer(s)
	defer ts.Close()
	res, err := post(t, ts.URL, chatBody)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `"content":"fixed answer"`) {
		t.Fatalf("body = %s", b)
	}
}

func TestSim_UnknownPathIsAnOpenAIStyle404(t *testing.T) {
	ts := httptest.NewServer(sim.New(sim.Params{}))
	defer ts.Close()
	res, err := http.Get(ts.URL + "/v1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 404 || !strings.Contains(string(b), `"error":{`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

func TestParseFault_ReadsEveryItem(t *testing.T) {
	f, err := sim.ParseFault("status=429; retry-after=2; latency=5ms; midstream=3; chunk-delay=1ms; message=slow down; reset")
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != 429 || f.RetryAfter != "2" || f.Latency != 5*time.Millisecond || f.MidStream != 3 || f.ChunkDelay != time.Millisecond || f.Message != "slow down" || !f.Reset {
		t.Fatalf("fault = %+v", f)
	}
	if _, err := sim.ParseFault("status=9999"); !errors.Is(err, sim.ErrBadFault) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseFault(f *testing.F) {
	f.Add("status=429; retry-after=2")
	f.Add("midstream=3;midstream-error")
	f.Add("latency=;;=")
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := sim.ParseFault(spec)
		if err == nil && got.Status != 0 && (got.Status < 100 || got.Status > 599) {
			t.Fatalf("accepted status %d", got.Status)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
