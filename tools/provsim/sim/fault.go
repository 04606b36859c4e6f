package sim

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault is a misbehaviour injected into one or more requests.
type Fault struct {
	// Latency is slept before anything is answered.
	Latency time.Duration
	// Status, when not 0 or 200, answers with this status and the family's error body.
	Status int
	// RetryAfter is the Retry-After header sent with Status (seconds or an HTTP date).
	RetryAfter string
	// Message replaces the default error message.
	Message string
	// Reset drops the connection without answering.
	Reset bool
	// MidStream, when > 0, sends that many SSE events of a streamed answer, then fails.
	MidStream int
	// MidStreamError makes the mid-stream failure an in-band error event instead of a dropped connection.
	MidStreamError bool
	// ChunkDelay overrides Params.ChunkDelay for this request.
	ChunkDelay time.Duration

	// Path, when set, limits a scripted fault to requests whose URL path contains it.
	Path string
	// Model, when set, limits a scripted fault to requests for this model (or Azure deployment).
	Model string
	// Times is how many matching requests a scripted fault applies to: 0 means once, negative means always.
	Times int

	family family
}

func (f *Fault) matches(path, model string) bool {
	if f.Path != "" && !strings.Contains(path, f.Path) {
		return false
	}
	if f.Model != "" && f.Model != model {
		return false
	}
	return true
}

// ErrBadFault is returned by ParseFault for a header it cannot read.
var ErrBadFault = errors.New("bad fault spec")

// ParseFault reads a fault spec: semicolon-separated items among
// "status=429", "retry-after=2", "latency=150ms", "reset", "midstream=3",
// "midstream-error", "chunk-delay=10ms", "message=text".
func ParseFault(spec string) (Fault, error) {
	var f Fault
	for item := range strings.SplitSeq(spec, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, _ := strings.Cut(item, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "status":
			f.Status, err = strconv.Atoi(v)
			if err == nil && (f.Status < 100 || f.Status > 599) {
				err = ErrBadFault
			}
		case "retry-after":
			f.RetryAfter = v
		case "latency":
			f.Latency, err = time.ParseDuration(v)
		case "reset":
			f.Reset = true
		case "midstream":
			f.MidStream, err = strconv.Atoi(v)
		case "midstream-error":
			f.MidStreamError = true
			if f.MidStream == 0 {
				f.MidStream = 1
			}
		case "chunk-delay":
			f.ChunkDelay, err = time.ParseDuration(v)
		case "message":
			f.Message = v
		default:
			err = ErrBadFault
		}
		if err != nil {
			return Fault{}, fmt.Errorf("parse fault item %q: %w", k, ErrBadFault)
		}
	}
	return f, nil
}

// faultFor combines the header fault (which wins) with the first matching scripted fault.
func (s *Sim) faultFor(r *http.Request, model string) (Fault, error) {
	if spec := r.Header.Get(FaultHeader); spec != "" {
		return ParseFault(spec)
	}
	f, _ := s.takeFault(r.URL.Path, model)
	return f, nil
}

func retryAfterMS(v string) string {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return strconv.FormatInt(int64(n*1000), 10)
	}
	return "1000"
}
