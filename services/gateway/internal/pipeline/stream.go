package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/llmjson"
)

// StreamAnswer is a streamed answer being relayed. Call Next until it reports
// done, then Finish before sending the terminal event it returned.
type StreamAnswer struct {
	pl       *Pipeline
	p        *Prepared
	st       Stream
	restorer *llmjson.StreamRestorer
	first    *routerv1.StreamCompleteResponse
	// Status is the provider's HTTP status on the first event.
	Status      int
	Provider    string
	ModelServed string
	usage       *routerv1.Usage
	sent        bytes.Buffer
	err         error

	firstErrorBody []byte
	beforeWait     func()
}

// BeforeWaiting sets f to run whenever Next is about to wait for the
// provider's next event: the moment to flush what was written, so that events
// already received go out together and none waits behind a slow provider.
func (s *StreamAnswer) BeforeWaiting(f func()) { s.beforeWait = f }

func (s *StreamAnswer) receive() bool {
	if s.beforeWait != nil {
		if b, ok := s.st.(BufferedStream); !ok || !b.Buffered() {
			s.beforeWait()
		}
	}
	return s.st.Receive()
}

// OpenStream routes a prepared streaming call and waits for the first event,
// so that a failure before any byte is sent becomes an ordinary error answer.
// When Status >= 400 the first event's data is the provider's error body and
// the stream is already finished.
func (pl *Pipeline) OpenStream(ctx context.Context, p *Prepared) (*StreamAnswer, error) {
	t := time.Now()
	st, err := pl.p.Router.StreamComplete(ctx, &routerv1.StreamCompleteRequest{Call: pl.routerCall(p)})
	if err != nil {
		pl.m.provider.Observe(since(t))
		return nil, pl.routeFailed(ctx, p, err)
	}
	received := st.Receive()
	pl.m.provider.Observe(since(t))
	pl.m.ownStreamed.Observe(p.prepared.Seconds())
	if !received {
		err := st.Err()
		_ = st.Close()
		if err == nil {
			err = fmt.Errorf("%w: stream ended before the first event", ErrUnavailable)
		}
		return nil, pl.routeFailed(ctx, p, err)
	}
	first := st.Msg()
	s := &StreamAnswer{pl: pl, p: p, st: st, first: first, Status: int(first.GetStatus()), Provider: first.GetProvider(), ModelServed: first.GetModelServed()}
	if s.Status == 0 {
		s.Status = 200
	}
	s.restorer = llmjson.NewStreamRestorer(p.Call.Format, p.TokenMap, p.Request.Format() == llmjson.OpenAIChat && !p.Request.IncludeUsage)
	if s.Status >= 400 {
		_ = st.Close()
		body, _ := llmjson.RestoreJSON(first.GetData(), p.TokenMap)
		s.first = nil
		s.sent.Write(body)
		_, err := pl.finish(ctx, p, outcome{status: s.Status, decision: auditv1.Decision_DECISION_FAILED_PROVIDER,
			reasons: []string{fmt.Sprintf("provider answered %d", s.Status)}, response: body, provider: s.Provider, modelServed: s.ModelServed, streamed: true})
		if err != nil {
			return nil, err
		}
		s.firstErrorBody = body
	}
	return s, nil
}

// ErrorBody is the provider's error body when Status >= 400.
func (s *StreamAnswer) ErrorBody() []byte { return s.firstErrorBody }

// Next returns the next events to send (restored). done is true when the
// provider's stream ended; terminal is then the final event to send after
// Finish ("[DONE]" or "message_stop"), if the provider sent one.
func (s *StreamAnswer) Next() (events []llmjson.Event, terminal *llmjson.Event, done bool) {
	for {
		var m *routerv1.StreamCompleteResponse
		if s.first != nil {
			m, s.first = s.first, nil
		} else if s.receive() {
			m = s.st.Msg()
		} else {
			s.err = s.st.Err()
			_ = s.st.Close()
			if s.err == nil {
				// stream ended without a terminal event: flush whatever is held back
				evs := s.restorer.Event(llmjson.Event{Data: []byte("[DONE]")})
				if s.p.Call.Format == llmjson.OpenAIChat && len(evs) > 1 {
					for _, e := range evs[:len(evs)-1] {
						s.record(e)
					}
					return evs[:len(evs)-1], nil, true
				}
			}
			return nil, nil, true
		}
		if u := m.GetUsage(); u != nil {
			s.usage = u
		}
		ev := llmjson.Event{Name: m.GetEvent(), Data: m.GetData()}
		if len(ev.Data) == 0 && ev.Name == "" {
			continue
		}
		out := s.restorer.Event(ev)
		if n := len(out); n > 0 && isTerminal(out[n-1]) {
			t := out[n-1]
			for _, e := range out[:n-1] {
				s.record(e)
			}
			s.record(t)
			// drain anything after the terminal event (usage may come last)
			for s.st.Receive() {
				if u := s.st.Msg().GetUsage(); u != nil {
					s.usage = u
				}
			}
			s.err = s.st.Err()
			_ = s.st.Close()
			return out[:n-1], &t, true
		}
		if len(out) == 0 {
			continue
		}
		for _, e := range out {
			s.record(e)
		}
		return out, nil, false
	}
}

func isTerminal(e llmjson.Event) bool {
	return e.Name == "message_stop" || string(bytes.TrimSpace(e.Data)) == "[DONE]"
}

func (s *StreamAnswer) record(e llmjson.Event) {
	s.sent.WriteString(e.Name)
	s.sent.WriteByte('\n')
	s.sent.Write(e.Data)
	s.sent.WriteByte('\n')
}

// Err is the stream's error after Next reported done, if it broke off.
func (s *StreamAnswer) Err() error { return s.err }

// Usage is the token count the provider reported.
func (s *StreamAnswer) Usage() *routerv1.Usage { return s.usage }

// Finish settles and records the stream. Call it after the last event and
// before the terminal one; in strict mode a failure to record must end the
// stream with an error instead of the terminal event.
func (s *StreamAnswer) Finish(ctx context.Context) error {
	decision := auditv1.Decision_DECISION_ALLOWED
	var reasons []string
	status := s.Status
	if s.err != nil {
		decision = auditv1.Decision_DECISION_FAILED_PROVIDER
		reasons = []string{"stream broke off"}
	}
	_, err := s.pl.finish(ctx, s.p, outcome{status: status, decision: decision, reasons: reasons, response: s.sent.Bytes(),
		usage: s.usage, provider: s.Provider, modelServed: s.ModelServed, streamed: true})
	return err
}

// Close ends the stream early (client gone) and records what was sent.
func (s *StreamAnswer) Close(ctx context.Context) {
	_ = s.st.Close()
	if s.p.finished {
		return
	}
	if s.err == nil {
		s.err = context.Canceled
	}
	_ = s.Finish(ctx)
}
