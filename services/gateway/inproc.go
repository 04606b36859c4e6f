package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
)

// InProcessClient returns an HTTP client that serves every request with h in
// this process, streaming the response through a pipe: no sockets, no copies
// through the kernel. Use it with the generated Connect clients (Connect
// protocol, the default) for server-streaming RPCs in the all-in-one binary,
// e.g. StreamerFromClient(routerv1connect.NewRouterServiceClient(InProcessClient(h), "http://router")).
func InProcessClient(h http.Handler) *http.Client {
	return &http.Client{Transport: inProcTransport{h: h}}
}

type inProcTransport struct{ h http.Handler }

func (t inProcTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	rw := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	sreq := req.Clone(req.Context())
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "in-process"
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	go func() {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				_ = pw.CloseWithError(fmt.Errorf("in-process handler panicked: %v", v))
			}
			rw.WriteHeader(http.StatusOK)
			_ = pw.Close()
		}()
		t.h.ServeHTTP(rw, sreq)
	}()
	select {
	case <-rw.ready:
	case <-req.Context().Done():
		_ = pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
	return &http.Response{
		Status: http.StatusText(rw.status), StatusCode: rw.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rw.sent, Body: pr, ContentLength: -1, Request: req,
	}, nil
}

// pipeWriter is the server side of an in-process exchange.
type pipeWriter struct {
	header http.Header
	sent   http.Header
	pw     *io.PipeWriter
	once   sync.Once
	status int
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	w.once.Do(func() {
		w.status = status
		w.sent = w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

// Flush is a no-op: every write already reaches the reader.
func (w *pipeWriter) Flush() {}

// StreamFunc is a router's StreamComplete in this process
// (router.Service.Stream): send gets each message, valid until send returns.
type StreamFunc func(ctx context.Context, req *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error

// StreamerFromFunc serves streaming calls with f in this process: f runs on
// its own goroutine and hands each message over a small buffer, with no
// encoding, framing or pipe in between.
func StreamerFromFunc(f StreamFunc) RouterStreamer {
	return RouterStreamerFunc(func(ctx context.Context, req *routerv1.StreamCompleteRequest) (RouterStream, error) {
		ctx, cancel := context.WithCancel(ctx)
		s := &funcStream{ch: make(chan *routerv1.StreamCompleteResponse, 16), cancel: cancel}
		go func() {
			defer close(s.ch)
			defer func() {
				if v := recover(); v != nil {
					s.err = connect.NewError(connect.CodeInternal, fmt.Errorf("in-process stream panicked: %v", v))
				}
			}()
			s.err = f(ctx, req, func(m *routerv1.StreamCompleteResponse) error {
				// The producer reuses m; the receiver keeps its own copy.
				select {
				case s.ch <- proto.CloneOf(m):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}()
		return s, nil
	})
}

// funcStream is the receiving end of StreamerFromFunc.
type funcStream struct {
	ch     chan *routerv1.StreamCompleteResponse
	cur    *routerv1.StreamCompleteResponse
	err    error // set before ch is closed
	ended  bool
	cancel context.CancelFunc
}

func (s *funcStream) Receive() bool {
	m, ok := <-s.ch
	if !ok {
		s.ended = true
		return false
	}
	s.cur = m
	return true
}

func (s *funcStream) Msg() *routerv1.StreamCompleteResponse { return s.cur }

// Buffered says whether Receive has a message without waiting for the producer.
func (s *funcStream) Buffered() bool { return len(s.ch) > 0 }

// Err is the stream's error once Receive has reported its end.
func (s *funcStream) Err() error {
	if !s.ended {
		return nil
	}
	return s.err
}

// Close stops the producer and waits for it.
func (s *funcStream) Close() error {
	s.cancel()
	for range s.ch {
	}
	s.ended = true
	return nil
}

// EngineRedactor serves Redact from a redaction engine in this process, for the
// all-in-one binary and tests; the redaction service wraps the same engine.
func EngineRedactor(e *engine.Engine) Redactor { return engineRedactor{e} }

type engineRedactor struct{ e *engine.Engine }

func (r engineRedactor) Redact(_ context.Context, req *connect.Request[redactionv1.RedactRequest]) (*connect.Response[redactionv1.RedactResponse], error) {
	in := req.Msg
	segs := make([]engine.Segment, len(in.GetSegments()))
	for i, s := range in.GetSegments() {
		segs[i] = engine.Segment{ID: s.GetId(), Text: s.GetText()}
	}
	er := engine.RedactRequest{Segments: segs, ProfileName: in.GetProfileName(), Tenant: in.GetTenant()}
	if p := in.GetProfile(); p != nil {
		prof := engine.Profile{Name: p.GetName(), Description: p.GetDescription(), DefaultAction: engine.Action(p.GetDefaultAction()),
			MinScore: p.GetMinScore(), BlockInjectionScore: p.GetBlockInjectionScore(), Actions: map[string]engine.Action{}}
		for k, v := range p.GetActions() {
			prof.Actions[k] = engine.Action(v)
		}
		for _, c := range p.GetCustomRules() {
			prof.CustomRules = append(prof.CustomRules, engine.CustomRule{EntityType: c.GetEntityType(), Pattern: c.GetPattern(),
				Terms: c.GetTerms(), DataClass: c.GetDataClass(), Score: c.GetScore()})
		}
		er.Profile = &prof
	}
	if er.ProfileName == "" && er.Profile == nil {
		er.ProfileName = "default"
	}
	res, err := r.e.Redact(er)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	out := &redactionv1.RedactResponse{Blocked: res.Blocked, BlockReasons: res.BlockReasons, DataClasses: res.DataClasses, InjectionScore: res.InjectionScore}
	for _, s := range res.Segments {
		out.Segments = append(out.Segments, &redactionv1.Segment{Id: s.ID, Text: s.Text})
	}
	for _, f := range res.Findings {
		out.Findings = append(out.Findings, &redactionv1.Finding{SegmentId: f.Segment, EntityType: f.EntityType, Start: int32(f.Start), End: int32(f.End),
			Rule: f.Rule, Score: f.Score, DataClass: f.DataClass, Action: redactionv1.Action(f.Action), Replacement: f.Replacement})
	}
	for _, t := range res.TokenMap {
		out.TokenMap = append(out.TokenMap, &redactionv1.TokenMapEntry{Placeholder: t.Placeholder, Original: t.Original, EntityType: t.EntityType})
	}
	return connect.NewResponse(out), nil
}
