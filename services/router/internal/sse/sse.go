// Package sse reads server-sent events from a provider's response body without
// copying more than one event at a time.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge is returned for an event line longer than the reader's limit.
var ErrTooLarge = errors.New("sse event too large")

// Event is one server-sent event. Name is "" for data-only events.
type Event struct {
	Name string
	Data []byte
}

// Reader reads events. The Data of a returned event is valid until the next call.
type Reader struct {
	br   *bufio.Reader
	max  int
	data []byte
	name []byte
}

// NewReader reads events from r; maxEvent bounds one event's size (1 MiB when 0).
func NewReader(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = 1 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), max: maxEvent}
}

// Next returns the next event, io.EOF at a clean end, or io.ErrUnexpectedEOF when the
// stream ends inside an event.
func (r *Reader) Next() (Event, error) {
	r.data = r.data[:0]
	r.name = r.name[:0]
	hasData := false
	started := false
	for {
		line, err := r.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if hasData {
					return Event{Name: string(r.name), Data: r.data}, nil
				}
				if started {
					return Event{}, io.ErrUnexpectedEOF
				}
				return Event{}, io.EOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if hasData {
				return Event{Name: string(r.name), Data: r.data}, nil
			}
			r.name = r.name[:0]
			started = false
			continue
		}
		started = true
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "data":
			if hasData {
				r.data = append(r.data, '\n')
			}
			if len(r.data)+len(value) > r.max {
				return Event{}, fmt.Errorf("read event: %w", ErrTooLarge)
			}
			r.data = append(r.data, value...)
			hasData = true
		case "event":
			r.name = append(r.name[:0], value...)
		}
	}
}

// readLine returns one line without its terminator (\n, \r\n). At the end of input a
// final unterminated line is returned with io.EOF deferred to the next call.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > r.max {
				return nil, fmt.Errorf("read line: %w", ErrTooLarge)
			}
			line, err = r.br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}

// Append writes ev in wire form to dst.
func Append(dst []byte, ev Event) []byte {
	if ev.Name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, ev.Name...)
		dst = append(dst, '\n')
	}
	for line := range bytes.SplitSeq(ev.Data, []byte{'\n'}) {
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}
