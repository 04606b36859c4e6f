package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t *testing.T, s string) ([]Event, error) {
	t.Helper()
	r := NewReader(strings.NewReader(s), 0)
	var out []Event
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, Event{Name: ev.Name, Data: bytes.Clone(ev.Data)})
	}
}

func TestReader_ParsesNamedMultiLineCommentsAndCRLF(t *testing.T) {
	evs, err := readAll(t, ": ping\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\ndata: [DONE]\n\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Name != "message_start" || string(evs[0].Data) != `{"a":1}` || string(evs[1].Data) != "x\ny" || string(evs[2].Data) != "[DONE]" || evs[1].Name != "" {
		t.Fatalf("events = %q", evs)
	}
}

func TestReader_TruncatedEventIsUnexpectedEOF(t *testing.T) {
	_, err := readAll(t, "data: a\n\nevent: x\n")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
}

func TestReader_RejectsOversizedEvent(t *testing.T) {
	r := NewReader(strings.NewReader("data: "+strings.Repeat("a", 100)+"\n\n"), 50)
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzReader_RoundTrip(f *testing.F) {
	f.Add("message_start", `{"type":"message_start"}`)
	f.Add("", "[DONE]")
	f.Fuzz(func(t *testing.T, name, data string) {
		if strings.ContainsAny(name, "\r\n") || strings.Contains(data, "\r") || name == "" && data == "" {
			return
		}
		wire := Append(nil, Event{Name: name, Data: []byte(data)})
		r := NewReader(bytes.NewReader(wire), 1<<16)
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("%q: %v", wire, err)
		}
		if ev.Name != strings.TrimPrefix(name, " ") && !strings.HasPrefix(name, " ") || string(ev.Data) != data && !strings.Contains(data, "\n ") && !strings.HasPrefix(data, " ") {
			t.Fatalf("round trip %q/%q -> %q/%q", name, data, ev.Name, ev.Data)
		}
	})
}
