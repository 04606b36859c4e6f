package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/tools/bench/internal/report"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

// A short smoke run of the whole command (URL target) against the in-process
// simulator, standing in for both the gateway and the direct baseline.
func TestRun_SmokeAgainstTheInProcessSimulator(t *testing.T) {
	s := sim.New(sim.Params{})
	s.SetRecording(false)
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, stream := range []bool{false, true} {
		c, err := parse([]string{"--target", "url", "--url", ts.URL, "--key", "k", "--direct-url", ts.URL,
			"--rate", "50", "--duration", "1s", "--slices", "2", "--warmup", "0", "--json"})
		if err != nil {
			t.Fatal(err)
		}
		c.stream = stream
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = run(ctx, c, slog.New(slog.DiscardHandler), &out)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var r report.Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if r.Direct == nil || r.Added == nil {
			t.Fatalf("no direct side or added latency: %s", out.String())
		}
		for _, side := range []report.Side{*r.Direct, r.Gateway} {
			if side.Sent != 50 || side.OK != 50 || side.Errors != 0 || side.Total.Count != 50 {
				t.Fatalf("stream=%v %s: sent %d ok %d errors %d (%v); want 50 answered", stream, side.Name, side.Sent, side.OK, side.Errors, side.ErrorKinds)
			}
			if stream && (side.TTFT == nil || side.TTFT.Count != 50) {
				t.Fatalf("stream %s: TTFT %+v, want 50 samples", side.Name, side.TTFT)
			}
		}
		if stream && r.AddedTTFT == nil {
			t.Fatal("streamed run without added TTFT")
		}
		var table bytes.Buffer
		report.Table(&table, &r)
		if !bytes.Contains(table.Bytes(), []byte("share this machine's CPU cores")) || !bytes.Contains(table.Bytes(), []byte("ADDED total")) {
			t.Fatalf("table lacks the shared-cores note or the added row:\n%s", table.String())
		}
	}
}

func TestParse_RefusesTargetsOffThisMachine(t *testing.T) {
	for _, args := range [][]string{
		{"--target", "url", "--url", "http://api.openai.com", "--key", "k"},
		{"--target", "url", "--url", "http://127.0.0.1:1", "--direct-url", "http://192.168.1.1"},
		{"--rate", "0"},
		{"--duration", "0s"},
	} {
		if _, err := parse(args); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
